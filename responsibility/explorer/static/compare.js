// Compare: run B against run A on the same test set: accuracy overall and per class, the predictions B fixed and
// broke (each with its top supporting training examples in both runs), and how the curated examples moved.
import { api, className, el, exampleLink, fmt, go, reloadRuns, state, thumb } from "./app.js";
import { barChart } from "./charts.js";

function runSelect(name, value) {
  return el("select", { name, onchange: (e) => go("compare", { ...current(), [name]: e.target.value }) }, state.runs.map((r, i) => el("option", { value: i, selected: i === value, text: `${i}: ${r.name}` })));
}

let chosen = { a: 0, b: 1 };
const current = () => ({ a: chosen.a, b: chosen.b });

function supporters(side, runIndex) {
  return el(
    "div",
    { class: "mini-cards" },
    side.supports.map((s) => el("a", { href: `#/example/${s.id}`, title: `#${s.id} ${className(s.label, state.runs[runIndex])}, score ${fmt(s.score, 3)}` }, thumb("train", s.id, { size: 32, runIndex })))
  );
}

function inputsTable(rows, a, b, kind) {
  if (!rows.length) return el("p", { class: "muted", text: `No test prediction was ${kind}.` });
  const ra = state.runs[a];
  return el(
    "table",
    { class: `grid compared ${kind}` },
    el("thead", {}, el("tr", {}, ["input", "", "true", "A predicted", "A: top supporters", "B predicted", "B: top supporters"].map((h) => el("th", { text: h })))),
    el(
      "tbody",
      {},
      rows.map((row) =>
        el(
          "tr",
          { "data-index": row.index },
          el("td", { class: "num", text: row.index }),
          el("td", {}, thumb("test", row.index, { size: 40, runIndex: a })),
          el("td", { text: className(row.true, ra) }),
          el("td", { class: row.a.predicted === row.true ? "right" : "wrong", text: className(row.a.predicted, ra) }),
          el("td", {}, supporters(row.a, a)),
          el("td", { class: row.b.predicted === row.true ? "right" : "wrong", text: className(row.b.predicted, ra) }),
          el("td", {}, supporters(row.b, b))
        )
      )
    )
  );
}

export async function renderCompare(root, params) {
  root.append(el("h2", { text: "Compare two runs" }));
  const wanted = Math.max(Number(params.get("a") ?? 0), Number(params.get("b") ?? 0));
  if (wanted >= state.runs.length) await reloadRuns();  // a run retrained since the list was loaded
  if (state.runs.length < 2) {
    root.append(el("p", { class: "muted", text: "Only one run is open. Retrain with a curation (Curation view), or start the app with two run directories." }));
    return;
  }
  const last = state.runs.length - 1;
  chosen = { a: Number(params.get("a") ?? (state.run === last ? 0 : state.run)), b: Number(params.get("b") ?? last) };
  root.append(el("div", { class: "controls" }, el("label", {}, "A ", runSelect("a", chosen.a)), el("label", {}, "B ", runSelect("b", chosen.b))));
  if (chosen.a === chosen.b) {
    root.append(el("p", { class: "error", text: "Choose two different runs." }));
    return;
  }
  const doc = await api(`/api/compare?a=${chosen.a}&b=${chosen.b}`);
  const ra = state.runs[chosen.a];
  const t = doc.table;
  const delta = doc.accuracy_b - doc.accuracy_a;
  root.append(
    el(
      "section",
      { class: "headline" },
      el("div", { class: "stat" }, el("span", { text: "A " + doc.a }), el("b", { text: `${(100 * doc.accuracy_a).toFixed(1)}%` })),
      el("div", { class: "stat" }, el("span", { text: "B " + doc.b }), el("b", { text: `${(100 * doc.accuracy_b).toFixed(1)}%` })),
      el("div", { class: `stat ${delta >= 0 ? "right" : "wrong"}` }, el("span", { text: "B − A" }), el("b", { class: "delta", text: `${delta >= 0 ? "+" : ""}${(100 * delta).toFixed(1)} points` }))
    ),
    el(
      "table",
      { class: "grid outcome" },
      el("thead", {}, el("tr", {}, el("th"), el("th", { text: "B right" }), el("th", { text: "B wrong" }))),
      el("tbody", {}, el("tr", {}, el("th", { text: "A right" }), el("td", { class: "num", text: t[0][0] }), el("td", { class: "num wrong", text: `${t[0][1]} broken` })), el("tr", {}, el("th", { text: "A wrong" }), el("td", { class: "num right", text: `${t[1][0]} fixed` }), el("td", { class: "num", text: t[1][1] })))
    ),
    el("h3", { text: "Accuracy per class" }),
    barChart(ra.class_names.map((n) => n.slice(0, 7)), [{ name: "A", values: doc.per_class_a.map((v) => v ?? 0) }, { name: "B", values: doc.per_class_b.map((v) => v ?? 0) }], { width: 760, yLabel: "accuracy" }),
    el("h3", { text: `Fixed by B (${doc.fixed.length})` }),
    inputsTable(doc.fixed, chosen.a, chosen.b, "fixed"),
    el("h3", { text: `Broken by B (${doc.broken.length})` }),
    inputsTable(doc.broken, chosen.a, chosen.b, "broken")
  );
  if (doc.curated.length) {
    const shifts = doc.shifts || {};
    const names = Object.keys(shifts);
    root.append(
      el("h3", { text: `The ${doc.curated.length} examples curated for B` }),
      el("p", { class: "muted", text: "Scores as percentiles within each run (1 = the most suspicious); a fixed label should drop." }),
      el(
        "table",
        { class: "grid curated" },
        el("thead", {}, el("tr", {}, ["", "id", "label in A", "label in B", "in B", ...names.map((n) => `${n} A → B`)].map((h) => el("th", { text: h })))),
        el(
          "tbody",
          {},
          doc.curated.map((c, j) =>
            el(
              "tr",
              {},
              el("td", {}, exampleLink(c.id, thumb("train", c.id, { size: 32, runIndex: chosen.a }))),
              el("td", { text: `#${c.id}` }),
              el("td", { class: c.flipped_a ? "wrong" : "", text: className(c.label_a, ra) }),
              el("td", { text: className(c.label_b, ra) }),
              el("td", { text: c.removed ? "removed" : c.weight !== 1 ? `×${c.weight}` : "yes" }),
              names.map((n) => el("td", { class: "num", text: `${shifts[n].percentile_a[j].toFixed(2)} → ${shifts[n].percentile_b[j].toFixed(2)}` }))
            )
          )
        )
      )
    );
  }
}
