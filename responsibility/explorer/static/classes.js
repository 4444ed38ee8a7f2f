// Classes: the inter-class matrix (how much of each output unit's responsibility comes from each training class)
// and, per class unit, the training examples that contributed most.
import { api, el, exampleCard, fmt, run, runPath } from "./app.js";

export async function renderClasses(root) {
  const r = run();
  if (!r.output_layer.length) {
    root.append(el("h2", { text: "Classes" }), el("p", { class: "error", text: "The run did not record its output layer." }));
    return;
  }
  const doc = await api(runPath("/classes?k=8"));
  const head = el("tr", {}, el("th", { text: "training class ↓ / output unit →" }), r.class_names.map((n) => el("th", { class: "rot", title: n, text: n })));
  const body = doc.matrix.map((row, t) =>
    el(
      "tr",
      {},
      el("th", { text: r.class_names[t] }),
      row.map((v, u) => {
        const cell = el("td", { class: `cell ${t === u ? "right" : ""}`, title: `${(100 * v).toFixed(1)}% of unit ${r.class_names[u]}'s responsibility comes from ${r.class_names[t]} examples`, text: (100 * v).toFixed(0) });
        cell.style.setProperty("--level", String(Math.min(1, v * 2)));
        return cell;
      })
    )
  );
  root.append(
    el("h2", { text: "Classes" }),
    el("p", { class: "muted", text: `Each column is one output unit; it shows which training classes its responsibility (|R| over the unit's weights) came from, in %. Diagonal dominance (mean diagonal / mean off-diagonal): ${fmt(doc.dominance, 3)}.` }),
    el("table", { class: "confusion classes-matrix" }, el("thead", {}, head), el("tbody", {}, body)),
    el("h3", { text: "Most responsible training examples of each class unit" })
  );
  doc.top.forEach((rows, c) => {
    root.append(el("section", { class: "class-row" }, el("h4", { text: r.class_names[c] }), el("div", { class: "cards" }, rows.map((row) => exampleCard(row, `|R| ${fmt(row.score, 3)}`)))));
  });
}
