// Suspects: training examples ranked by a score, with thumbnails, labels, predictions and known flips; the
// detection curve when the run planted label noise; bulk actions on a selection or the top k.
import { actionBar } from "./actions.js";
import { api, className, curationBadges, el, exampleLink, fmt, go, labelCell, pager, run, runPath, thumb } from "./app.js";
import { lineChart } from "./charts.js";

export async function renderSuspects(root, params) {
  const r = run();
  const score = params.get("score") || r.scores[0];
  const order = params.get("order") || "desc";
  const cls = params.get("cls") ?? "";
  const only = params.get("only") || "all";
  const offset = Number(params.get("offset") || 0);
  const limit = Number(params.get("limit") || 50);
  const query = new URLSearchParams({ score, order, only, offset, limit });
  if (cls !== "") query.set("cls", cls);
  const [page, detection] = await Promise.all([
    api(runPath(`/suspects?${query}`)),
    r.planted_noise ? api(runPath("/detection")) : Promise.resolve(null),
  ]);
  const current = { score, order, cls, only, limit };
  const update = (changes) => go("suspects", { ...current, offset: 0, ...changes });
  const selected = new Set();

  const controls = el(
    "div",
    { class: "controls" },
    el("label", {}, "rank by ", el("select", { name: "score", onchange: (e) => update({ score: e.target.value }) }, r.scores.map((s) => el("option", { value: s, selected: s === score, text: s })))),
    el("label", {}, "order ", el("select", { name: "order", onchange: (e) => update({ order: e.target.value }) }, [["desc", "most suspicious first"], ["asc", "least suspicious first"]].map(([v, t]) => el("option", { value: v, selected: v === order, text: t })))),
    el("label", {}, "given label ", el("select", { name: "cls", onchange: (e) => update({ cls: e.target.value }) }, el("option", { value: "", text: "all classes" }), r.class_names.map((n, i) => el("option", { value: i, selected: String(i) === cls, text: n })))),
    el("label", {}, "show ", el("select", { name: "only", onchange: (e) => update({ only: e.target.value }) }, [["all", "all"], ["flipped", "known flips only"], ["curated", "curated only"]].map(([v, t]) => el("option", { value: v, selected: v === only, text: t }))))
  );
  root.append(el("h2", { text: "Suspects" }), el("p", { class: "muted", text: `${score}: ${page.description}` }), controls);

  const topK = el("input", { type: "number", name: "topk", min: 1, max: r.num_examples, value: 10, class: "narrow", "aria-label": "k" });
  const scope = el("select", { name: "scope", "aria-label": "apply to" }, el("option", { value: "ticked", text: "the ticked rows" }), el("option", { value: "top", text: "the k most suspicious (this score and class), k =" }));
  const target = () => {
    if (scope.value === "top") return { top: { score, k: Number(topK.value), cls: cls === "" ? null : Number(cls) } };
    return selected.size ? { ids: [...selected] } : null;
  };
  const bar = actionBar(target, () => go("suspects", { ...current, offset }), { title: "Act on" });
  bar.firstChild.after(scope, topK);
  topK.hidden = true;
  scope.addEventListener("change", () => (topK.hidden = scope.value !== "top"));
  root.append(bar);

  let side = null;
  if (detection && detection.curves.length) {
    const legend = detection.curves.map((c) => `${c.score}: ${(100 * c.recall_10).toFixed(0)}% found at 10% checked, ${(100 * c.recall_20).toFixed(0)}% at 20%`);
    side = el(
      "section",
      { class: "detection" },
      el("h3", { text: `Detection of the ${detection.flipped} planted label flips` }),
      lineChart(detection.curves.map((c) => ({ name: c.score, x: c.checked, y: c.found })), { xLabel: "fraction of examples checked", yLabel: "fraction of flips found", diagonal: true }),
      el("ul", { class: "legend-text" }, legend.map((t) => el("li", { text: t })))
    );
  }
  const rows = page.rows.map((row) => {
    const box = el("input", { type: "checkbox", "aria-label": `select example ${row.id}`, onchange: (e) => (e.target.checked ? selected.add(row.id) : selected.delete(row.id)) });
    return el(
      "tr",
      { class: row.flipped ? "flipped" : "", "data-id": row.id },
      el("td", {}, box),
      el("td", { class: "num", text: row.rank }),
      el("td", {}, exampleLink(row.id, thumb("train", row.id))),
      el("td", {}, exampleLink(row.id, `#${row.id}`)),
      el("td", {}, labelCell(row)),
      el("td", { class: row.predicted !== row.label ? "disagree" : "", text: className(row.predicted) }),
      el("td", { class: "num", text: fmt(row.score) }),
      el("td", {}, curationBadges(row))
    );
  });
  const all = el("input", {
    type: "checkbox",
    "aria-label": "select all rows on this page",
    onchange: (e) => {
      for (const box of root.querySelectorAll("tbody input[type=checkbox]")) {
        box.checked = e.target.checked;
        box.dispatchEvent(new Event("change"));
      }
    },
  });
  const table = el(
    "div",
    {},
    el(
      "table",
      { class: "grid suspects" },
      el("thead", {}, el("tr", {}, el("th", {}, all), ["rank", "image", "id", "given label", "predicted", score, "curation"].map((h) => el("th", { text: h })))),
      el("tbody", {}, rows)
    ),
    pager(page.total, offset, limit, (o) => go("suspects", { ...current, offset: o }))
  );
  root.append(el("div", { class: "suspects-layout" }, table, side));
}
