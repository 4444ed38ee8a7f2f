// Curation actions: relabel, remove, restore, reweight, tag and note, for one example, a selection, or the top k
// of a ranking. Every change goes to the server with the app's token and a reason; the server validates it.
import { api, className, el, notify, refreshCurationBadge, run, runPath } from "./app.js";

export async function act(action, target, values = {}) {
  const body = { action, ...target, ...values };
  const doc = await api(runPath("/curation"), { method: "POST", body });
  await refreshCurationBadge();
  return doc;
}

function classSelect(name, chosen) {
  return el("select", { name, "aria-label": "new label" }, run().class_names.map((n, i) => el("option", { value: i, selected: i === chosen, text: `${i}: ${n}` })));
}

// The action controls. target() returns {ids: [...]} or {top: {...}}, or null when nothing is chosen.
export function actionBar(target, onDone, { title = "Act on the selection", label: chosen = 0 } = {}) {
  const label = classSelect("label", chosen);
  const factor = el("input", { type: "number", name: "factor", min: "0.01", step: "any", value: "10", class: "narrow", "aria-label": "weight factor" });
  const tag = el("input", { type: "text", name: "tag", maxlength: 64, placeholder: "tag", class: "narrow" });
  const note = el("input", { type: "text", name: "note", maxlength: 10000, placeholder: "note" });
  const reason = el("input", { type: "text", name: "reason", maxlength: 2000, placeholder: "reason (kept with the change)" });

  async function run_(action, values = {}) {
    const t = target();
    if (!t) {
      notify("Choose examples first (tick rows, or use the top-k button).", "error");
      return;
    }
    try {
      const doc = await act(action, t, { ...values, reason: reason.value });
      const last = doc.changes[0];
      notify(`${action}: ${last.ids.length} example(s) recorded in ${doc.file}`);
      reason.value = "";
      await onDone();
    } catch (err) {
      notify(err.message, "error");
    }
  }

  return el(
    "div",
    { class: "actions" },
    el("strong", { text: title }),
    el("span", { class: "group" }, el("button", { class: "act-relabel", onclick: () => run_("relabel", { label: Number(label.value) }), text: "Relabel to" }), label),
    el("button", { class: "act-remove", onclick: () => run_("remove"), text: "Remove" }),
    el("button", { class: "act-restore", onclick: () => run_("restore"), text: "Restore" }),
    el("span", { class: "group" }, el("button", { class: "act-reweight", onclick: () => run_("reweight", { factor: Number(factor.value) }), text: "Reweight ×" }), factor),
    el("span", { class: "group" }, el("button", { class: "act-tag", onclick: () => run_("tag", { text: tag.value }), text: "Tag" }), tag, el("button", { class: "act-untag", onclick: () => run_("untag", { text: tag.value }), text: "Untag" })),
    el("span", { class: "group" }, el("button", { class: "act-note", onclick: () => run_("note", { text: note.value }), text: "Note" }), note),
    reason
  );
}

export function describeChange(change) {
  const what = {
    relabel: () => `relabel to ${className(change.label)}`,
    reweight: () => `reweight ×${change.factor}`,
    note: () => (change.text ? `note “${change.text}”` : "clear note"),
    tag: () => `tag “${change.tag}”`,
    untag: () => `untag “${change.tag}”`,
    remove: () => "remove",
    restore: () => "restore",
  }[change.action];
  return what ? what() : change.action;
}
