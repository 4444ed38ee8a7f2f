// The explorer's front end: hash routes, one module per view. Every piece of data reaches the page through
// textContent or a plain attribute (el() below): never as markup, so class names and notes stay text.
import { renderClasses } from "./classes.js";
import { renderCompare } from "./compare.js";
import { renderCuration } from "./curation.js";
import { renderExample } from "./example.js";
import { renderSuspects } from "./suspects.js";
import { renderTests } from "./tests.js";

export const state = { runs: [], run: 0, token: "", job: null, changes: 0 };
const VIEWS = {
  suspects: renderSuspects,
  tests: renderTests,
  classes: renderClasses,
  example: renderExample,
  curation: renderCuration,
  compare: renderCompare,
};

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  if (method !== "GET") init.headers["X-Explorer-Token"] = state.token;
  const res = await fetch(path, init);
  const doc = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
  if (!res.ok) throw new Error(doc.error || `${res.status} ${res.statusText}`);
  return doc;
}

export const run = () => state.runs[state.run];
export const runPath = (suffix = "") => `/api/runs/${state.run}${suffix}`;
export const className = (c, r = run()) => (c === null || c === undefined ? "–" : r.class_names[c] ?? String(c));
export const fmt = (v, digits = 4) => (v === null || v === undefined ? "–" : Number(v).toPrecision(digits));

export function thumb(split, id, { size = 56, runIndex = state.run } = {}) {
  const img = el("img", {
    src: `/api/runs/${runIndex}/thumbs/${split}/${id}`,
    alt: `${split} image ${id}`,
    width: size,
    height: size,
    class: "thumb",
  });
  return img;
}

export function notify(message, kind = "info") {
  const box = document.getElementById("notice");
  box.replaceChildren(el("span", { class: kind, text: message }));
  if (kind !== "error") setTimeout(() => box.firstChild?.textContent === message && box.replaceChildren(), 4000);
}

export function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [view, arg] = path.split("/");
  return { view: VIEWS[view] ? view : "suspects", arg, params: new URLSearchParams(query) };
}

export function go(view, params = {}, arg) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== ""));
  const hash = `#/${view}${arg !== undefined ? `/${arg}` : ""}${query.size ? `?${query}` : ""}`;
  if (location.hash === hash) render();
  else location.hash = hash;
}

export function exampleLink(id, children) {
  return el("a", { href: `#/example/${id}`, class: "example-link" }, children);
}

export function labelCell(row) {
  const cell = el("span", {}, className(row.label));
  if (row.flipped) cell.append(el("span", { class: "flip", title: "planted label flip", text: ` ≠ true ${className(row.clean)}` }));
  return cell;
}

export function curationBadges(row) {
  const c = row.curation;
  if (!c) return el("span");
  const out = el("span", { class: "badges" });
  if (c.label !== null && c.label !== row.label) out.append(el("span", { class: "badge relabel", text: `→ ${className(c.label)}` }));
  if (c.removed) out.append(el("span", { class: "badge remove", text: "removed" }));
  if (c.weight !== 1) out.append(el("span", { class: "badge weight", text: `×${c.weight}` }));
  for (const tag of c.tags) out.append(el("span", { class: "badge tag", text: tag }));
  if (c.note) out.append(el("span", { class: "badge note", title: c.note, text: "note" }));
  return out;
}

export function exampleCard(row, caption) {
  return el(
    "figure",
    { class: `card${row.flipped ? " flipped" : ""}`, "data-id": row.id },
    exampleLink(row.id, thumb("train", row.id)),
    el("figcaption", {}, el("b", { text: `#${row.id}` }), " ", labelCell(row), caption ? el("div", { class: "muted" }, caption) : null, curationBadges(row))
  );
}

export function pager(total, offset, limit, onPage) {
  const last = Math.max(0, Math.ceil(total / limit) - 1);
  const page = Math.floor(offset / limit);
  return el(
    "div",
    { class: "pager" },
    el("button", { disabled: page === 0, onclick: () => onPage(Math.max(0, offset - limit)), text: "‹ previous" }),
    el("span", { text: `${total ? offset + 1 : 0}–${Math.min(total, offset + limit)} of ${total}` }),
    el("button", { disabled: page >= last, onclick: () => onPage(offset + limit), text: "next ›" })
  );
}

export async function refreshCurationBadge() {
  try {
    const cur = await api(runPath("/curation"));
    state.changes = cur.changes.length;
    document.getElementById("changes-badge").textContent = state.changes ? String(state.changes) : "";
  } catch (err) {
    notify(err.message, "error");
  }
}

async function loadRuns(keep = true) {
  state.runs = await api("/api/runs");
  const select = document.getElementById("run");
  select.replaceChildren(...state.runs.map((r, i) => el("option", { value: i, text: `${i}: ${r.name}${r.curated ? " (curated)" : ""}` })));
  if (!keep || state.run >= state.runs.length) state.run = 0;
  select.value = String(state.run);
}

export async function reloadRuns() {
  await loadRuns(true);
}

let rendering = 0;
export async function render() {
  const { view, arg, params } = parseHash();
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.view === view);
  const token = ++rendering;
  const main = document.getElementById("view");
  const root = el("div", { class: `view view-${view}` });
  main.replaceChildren(el("p", { class: "muted loading", text: "Loading…" }));
  try {
    await VIEWS[view](root, params, arg);
    if (token === rendering) main.replaceChildren(root);
  } catch (err) {
    if (token === rendering) main.replaceChildren(el("p", { class: "error", text: err.message }));
  }
}

function readToken() {
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    sessionStorage.setItem("explorer-token", params.get("token"));
    history.replaceState(null, "", location.pathname + location.hash);  // the token leaves the address bar
  }
  state.token = sessionStorage.getItem("explorer-token") || "";
  if (!state.token) notify("Read-only: open the URL the server printed (it carries the token) to make changes.", "error");
}

async function start() {
  readToken();
  await loadRuns(false);
  document.getElementById("run").addEventListener("change", (e) => {
    state.run = Number(e.target.value);
    refreshCurationBadge();
    render();
  });
  window.addEventListener("hashchange", () => {
    document.querySelector("#notice .info")?.remove();  // a confirmation belongs to the view it was given in
    render();
  });
  await refreshCurationBadge();
  await render();
}

start().catch((err) => notify(err.message, "error"));
