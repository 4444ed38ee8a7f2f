// Curation: what the working curation holds (every change with its time and reason), undo, and retraining with it
// as a background job with live progress that can be cancelled.
import { describeChange } from "./actions.js";
import { api, el, exampleLink, go, notify, refreshCurationBadge, reloadRuns, render, run, runPath, state } from "./app.js";

function idList(ids) {
  const shown = ids.slice(0, 12);
  const out = el("span", { class: "ids" });
  shown.forEach((id, j) => out.append(j ? ", " : "", exampleLink(id, `#${id}`)));
  if (ids.length > shown.length) out.append(` … (+${ids.length - shown.length})`);
  return out;
}

function changesTable(changes, withSeq) {
  return el(
    "table",
    { class: "grid changes" },
    el("thead", {}, el("tr", {}, [withSeq ? "#" : "undone at", "time", "change", "examples", "reason"].map((h) => el("th", { text: h })))),
    el(
      "tbody",
      {},
      changes.map((c) =>
        el("tr", { class: `action-${c.action}` }, el("td", { text: withSeq ? c.seq + 1 : c.undone_at }), el("td", { text: c.time }), el("td", { text: describeChange(c) }), el("td", {}, idList(c.ids)), el("td", { text: c.reason }))
      )
    )
  );
}

function jobPanel(job) {
  const box = el("div", { class: `job-panel ${job.state}` });
  const p = job.progress;
  const title = { running: "Retraining…", done: "Retrained", failed: "Retraining failed", cancelled: "Retraining cancelled" }[job.state];
  box.append(el("h4", { text: `${title}: ${job.target}` }));
  if (job.state === "running") {
    const total = p && p.total ? p.total : 0;
    const step = p ? p.step : 0;
    box.append(
      el("progress", { max: total || 1, value: total ? step : 0 }),
      el("span", { class: "muted", text: p ? ` step ${step}${total ? ` of ${total}` : ""}, epoch ${p.epoch + 1} of ${p.max_epochs}` : " starting…" }),
      " ",
      el("button", { class: "cancel", onclick: cancel, text: "Cancel" })
    );
  } else if (job.state === "done") {
    box.append(el("p", {}, `New run ${job.new_run} opened in ${job.seconds.toFixed(0)} s. `, el("button", { class: "go-compare", onclick: () => go("compare", { a: job.source, b: job.new_run }), text: "Compare with the original run" })));
  } else if (job.state === "failed") {
    box.append(el("p", { class: "error", text: job.error }), el("pre", { class: "log", text: job.log }));
  }
  return box;
}

async function cancel() {
  try {
    await api("/api/job/cancel", { method: "POST" });
    notify("Retraining cancelled; its partial run was removed.");
    render();
  } catch (err) {
    notify(err.message, "error");
  }
}

let polling = null;
export async function pollJob() {
  const job = await api("/api/job");
  const before = state.job;
  state.job = job.state === "none" ? null : job;
  if (before && before.state === "running" && state.job && state.job.state === "done") await reloadRuns();  // the new run
  const header = document.getElementById("job");
  header.replaceChildren(state.job && state.job.state === "running" ? el("span", { class: "badge running", text: `retraining ${state.job.progress && state.job.progress.total ? Math.round((100 * state.job.progress.step) / state.job.progress.total) : 0}%` }) : "");
  for (const panel of document.querySelectorAll(".job-slot")) panel.replaceChildren(state.job ? jobPanel(state.job) : "");
  if (state.job && state.job.state === "running") {
    clearTimeout(polling);
    polling = setTimeout(() => pollJob().catch((err) => notify(err.message, "error")), 700);
  }
}

export async function renderCuration(root) {
  const r = run();
  const cur = await api(runPath("/curation"));
  const s = cur.summary;
  root.append(
    el("h2", { text: "Curation" }),
    el("p", { class: "muted", text: `Changes are saved to ${cur.file} in the run directory ${r.name} as you make them. The dataset and the store are never modified; retraining applies the curation to a copy of the run's config.` }),
    el(
      "ul",
      { class: "summary" },
      [["relabelled", s.relabelled], ["removed", s.removed], ["reweighted", s.reweighted], ["with a note", s.notes], ["tagged", s.tagged]].map(([k, v]) => el("li", {}, el("b", { text: v }), ` ${k}`))
    ),
    el(
      "div",
      { class: "controls" },
      el("button", {
        class: "retrain primary",
        disabled: !cur.changes.length,
        text: "Retrain with this curation",
        onclick: async () => {
          try {
            await api(runPath("/retrain"), { method: "POST" });
            notify("Retraining started.");
            await pollJob();
          } catch (err) {
            notify(err.message, "error");
          }
        },
      }),
      el("button", {
        class: "undo",
        disabled: !cur.changes.length,
        text: "Undo the last change",
        onclick: async () => {
          try {
            await api(runPath("/curation/undo"), { method: "POST" });
            await refreshCurationBadge();
            render();
          } catch (err) {
            notify(err.message, "error");
          }
        },
      })
    ),
    el("div", { class: "job-slot" }),
    el("h3", { text: `Changes (${cur.changes.length}), newest first` }),
    cur.changes.length ? changesTable(cur.changes, true) : el("p", { class: "muted", text: "No changes yet: act on examples in the Suspects, Example or Test views." })
  );
  if (cur.undone.length) root.append(el("h3", { text: "Undone" }), changesTable(cur.undone, false));
  queueMicrotask(() => pollJob().catch((err) => notify(err.message, "error")));
}
