// Example: one training example: its scores, its responsibility over training (per epoch), its label and
// prediction in every open run on the same data, and the test predictions it supports or opposes most.
import { actionBar } from "./actions.js";
import { api, className, curationBadges, el, fmt, go, labelCell, run, runPath, state, thumb } from "./app.js";
import { barChart } from "./charts.js";

function testCards(rows, empty) {
  if (!rows || !rows.length) return el("p", { class: "muted", text: empty });
  return el(
    "div",
    { class: "cards small" },
    rows.map((row) =>
      el(
        "a",
        { href: `#/tests?i=${row.index}`, class: `test-card ${row.predicted === row.true ? "right" : "wrong"}`, title: `true ${className(row.true)}, predicted ${className(row.predicted)}, score ${fmt(row.score, 3)}` },
        thumb("test", row.index, { size: 48 }),
        el("span", { text: className(row.predicted) })
      )
    )
  );
}

export async function renderExample(root, params, arg) {
  const r = run();
  const picker = el("form", { class: "controls", onsubmit: (e) => (e.preventDefault(), go("example", {}, Number(picker.elements.id.value))) }, el("label", {}, "example id ", el("input", { type: "number", name: "id", min: 0, max: r.num_examples - 1, value: arg ?? "", class: "narrow" })), el("button", { text: "open" }));
  root.append(el("h2", { text: "Example" }), picker);
  if (arg === undefined || arg === "") {
    const top = await api(runPath(`/suspects?limit=1&score=${encodeURIComponent(r.scores[0])}`));
    root.append(el("p", { class: "muted" }, "Pick an id, or start with the top suspect: ", el("a", { href: `#/example/${top.rows[0].id}`, text: `#${top.rows[0].id}` })));
    return;
  }
  const id = Number(arg);
  const doc = await api(runPath(`/examples/${id}`));
  const c = doc.curation;
  root.append(
    el(
      "section",
      { class: "example-head" },
      thumb("train", id, { size: 140 }),
      el(
        "div",
        {},
        el("h3", { text: `Training example #${id}` }),
        el("p", {}, "given label ", labelCell(doc), ", predicted ", el("b", { class: doc.predicted === doc.label ? "right" : "wrong", text: className(doc.predicted) })),
        doc.removed_in_run ? el("p", { class: "muted", text: "This run was trained without it (removed by the run's curation)." }) : null,
        doc.weight_in_run !== 1 ? el("p", { class: "muted", text: `This run weighted its loss ×${doc.weight_in_run}.` }) : null,
        el("p", {}, "curation: ", curationBadges(doc)),
        c.note ? el("blockquote", { class: "note", text: c.note }) : null,
        el(
          "table",
          { class: "grid scores" },
          el("thead", {}, el("tr", {}, ["score", "value", "percentile (1 = most suspicious)"].map((h) => el("th", { text: h })))),
          el("tbody", {}, Object.entries(doc.scores).map(([name, s]) => el("tr", {}, el("td", { text: name }), el("td", { class: "num", text: fmt(s.value) }), el("td", { class: "num", text: s.percentile.toFixed(3) }))))
        )
      )
    ),
    actionBar(() => ({ ids: [id] }), () => go("example", {}, id), { title: `Act on #${id}`, label: doc.predicted })
  );
  if (doc.epochs) {
    root.append(
      el(
        "section",
        {},
        el("h3", { text: "Responsibility over training" }),
        el("p", { class: "muted", text: "Per epoch: its total |R| over the output layer, and its net push on its own label's unit (a mislabelled example keeps pushing)." }),
        barChart(doc.epochs.epochs.map((e) => `epoch ${e}`), [{ name: "|R| output layer", values: doc.epochs.abs }, { name: "label push", values: doc.epochs.push }], { yLabel: "R" })
      )
    );
  }
  root.append(
    el(
      "section",
      {},
      el("h3", { text: "In every open run on the same data" }),
      el(
        "table",
        { class: "grid" },
        el("thead", {}, el("tr", {}, ["run", "label trained with", "predicted", "in training"].map((h) => el("th", { text: h })))),
        el(
          "tbody",
          {},
          doc.runs.map((row) =>
            el("tr", { class: row.run === state.run ? "current" : "" }, el("td", { text: row.name }), el("td", { text: className(row.label) }), el("td", { text: className(row.predicted) }), el("td", { text: row.removed_in_run ? "removed" : row.weight_in_run !== 1 ? `weight ×${row.weight_in_run}` : "yes" }))
          )
        )
      )
    ),
    el("section", {}, el("h3", { text: "Test predictions it supports most" }), testCards(doc.supports, "It is not among the top supporters of any test prediction.")),
    el("section", {}, el("h3", { text: "Test predictions it opposes most" }), testCards(doc.opposes, "It is not among the top opponents of any test prediction."))
  );
}
