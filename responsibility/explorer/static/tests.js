// Test inputs: predictions grouped by (true, predicted) class so errors can be browsed by kind; for one input,
// the training examples that most support and most oppose its prediction.
import { api, className, el, exampleCard, fmt, go, pager, run, runPath, thumb } from "./app.js";

function confusionTable(conf, current) {
  const r = run();
  const head = el("tr", {}, el("th", { text: "true ↓ / predicted →" }), r.class_names.map((n) => el("th", { class: "rot", title: n, text: n })));
  const max = Math.max(1, ...conf.matrix.flat());
  const body = conf.matrix.map((row, t) =>
    el(
      "tr",
      {},
      el("th", { text: r.class_names[t] }),
      row.map((count, p) => {
        const cell = el("td", {
          class: `cell ${t === p ? "right" : "wrong"}${String(t) === current.true && String(p) === current.predicted ? " chosen" : ""}`,
          title: `true ${r.class_names[t]}, predicted ${r.class_names[p]}: ${count}`,
          text: count || "",
        });
        if (count) {
          cell.style.setProperty("--level", String(count / max));
          cell.addEventListener("click", () => go("tests", { true: t, predicted: p }));
        }
        return cell;
      })
    )
  );
  return el("table", { class: "confusion" }, el("thead", {}, head), el("tbody", {}, body));
}

function explanationRow(title, rows, hint) {
  return el(
    "section",
    { class: "explanation" },
    el("h3", { text: title }),
    el("p", { class: "muted", text: hint }),
    rows.length ? el("div", { class: "cards" }, rows.map((row) => exampleCard(row, `score ${fmt(row.score, 3)}`))) : el("p", { class: "muted", text: "No training example moved this score in that direction." })
  );
}

async function renderInput(root, i) {
  const item = await api(runPath(`/tests/${i}`));
  const r = run();
  const verdict = item.predicted === item.true ? "right" : "wrong";
  root.append(
    el(
      "section",
      { class: `test-input verdict-${verdict}` },
      el("div", {}, thumb("test", i, { size: 112 })),
      el(
        "div",
        {},
        el("h3", { text: `Test input ${i}` }),
        el("p", {}, "true class ", el("b", { text: className(item.true) }), ", predicted ", el("b", { class: verdict, text: className(item.predicted) }), ` (${(100 * item.confidence).toFixed(1)}%)`),
        el("p", { class: "muted", text: `top classes: ${item.probabilities.map((p) => `${r.class_names[p.class]} ${(100 * p.p).toFixed(1)}%`).join(", ")}` }),
        el("p", { class: "muted", text: "Each training example is scored by how much its recorded updates moved this input's predicted-class score (the input's gradient on each layer dotted with the example's push, per layer)." })
      )
    ),
    explanationRow("Supports the prediction", item.supports, "Training examples whose updates raised the predicted class's score for this input, most first."),
    explanationRow("Opposes the prediction", item.opposes, "Training examples whose updates lowered it, most first.")
  );
}

export async function renderTests(root, params) {
  const current = { true: params.get("true") ?? "", predicted: params.get("predicted") ?? "", errors: params.get("errors") || "0" };
  const offset = Number(params.get("offset") || 0);
  const limit = 60;
  const query = new URLSearchParams({ offset, limit, errors: current.errors });
  if (current.true !== "") query.set("true", current.true);
  if (current.predicted !== "") query.set("predicted", current.predicted);
  const [conf, list] = await Promise.all([api(runPath("/confusion")), api(runPath(`/tests?${query}`))]);
  const chosen = params.get("i");
  const what = current.true !== "" ? `true ${className(Number(current.true))}, predicted ${className(Number(current.predicted))}` : current.errors === "1" ? "all errors" : "all test inputs";
  root.append(
    el("h2", { text: "Test inputs" }),
    el("p", { class: "muted", text: `Test accuracy ${(100 * conf.accuracy).toFixed(1)}%. Click a cell to list its inputs; off-diagonal cells are errors.` }),
    el(
      "div",
      { class: "split" },
      el("div", {}, confusionTable(conf, current), el("p", {}, el("button", { onclick: () => go("tests", { errors: 1 }), text: "all errors" }), " ", el("button", { onclick: () => go("tests", {}), text: "all inputs" }))),
      el(
        "div",
        { class: "test-list" },
        el("h3", { text: `${what}: ${list.total}` }),
        el(
          "div",
          { class: "cards small" },
          list.rows.map((row) =>
            el(
              "a",
              { href: `#/tests?${new URLSearchParams({ ...current, offset, i: row.index })}`, class: `test-card ${row.predicted === row.true ? "right" : "wrong"}${String(row.index) === chosen ? " chosen" : ""}`, "data-index": row.index, title: `true ${className(row.true)}, predicted ${className(row.predicted)}` },
              thumb("test", row.index, { size: 48 }),
              el("span", { text: className(row.predicted) })
            )
          )
        ),
        pager(list.total, offset, limit, (o) => go("tests", { ...current, offset: o }))
      )
    )
  );
  if (chosen !== null) await renderInput(root, Number(chosen));
}
