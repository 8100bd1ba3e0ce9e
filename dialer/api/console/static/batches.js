// The batches page: one page of the workspace's batches with live progress, by short polling of
// GET /api/call/batches (one query answers every batch's counters; the cost is O(1) per batch).

import { badge, clear, clock, h, label, num, poll } from "./dom.js";

export const POLL_MS = 2000;
const PAGE = 20;
const STATUSES = ["pending", "running", "paused", "completed", "cancelled", "failed"];

export function outcomes(byOutcome) {
  const entries = Object.entries(byOutcome || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return "—";
  return entries.map(([name, n]) => `${label(name)} ${num(n)}`).join(" · ");
}

export function rate(perMinute) {
  return perMinute === null ? "—" : num(Math.round(perMinute));
}

export function mountBatches(root, { api, samples, announce }) {
  const filter = h("select", { id: "batch-status-filter" },
    h("option", { value: "" }, "All statuses"),
    STATUSES.map((s) => h("option", { value: s }, label(s))));
  const updated = h("span", { class: "hint", id: "batches-updated" }, "Loading…");
  const problem = h("p", { class: "error", role: "alert" });
  const tbody = h("tbody");
  const table = h("table", { class: "batches", "aria-describedby": "batches-updated" },
    h("caption", { class: "visually-hidden" }, "Batches, newest first, with live progress"),
    h("thead", {}, h("tr", {},
      ["Name", "Status", "Finished", "In flight / limit", "Queued", "Finished by outcome", "Calls/min"]
        .map((c) => h("th", { scope: "col" }, c)))),
    tbody);
  const empty = h("p", { class: "empty", hidden: true });
  const older = h("button", { type: "button", class: "secondary", hidden: true }, "Older batches");
  const newest = h("button", { type: "button", class: "secondary", hidden: true }, "Back to the newest");

  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Batches"), h("a", { class: "button", href: "#/batches/new" }, "New batch")),
    h("div", { class: "toolbar" }, h("label", { for: "batch-status-filter" }, "Status"), filter, updated),
    problem, h("div", { class: "table-wrap" }, table), empty, h("div", { class: "pager" }, newest, older));

  const rows = new Map();  // batchId -> the row's cells, updated in place (focus and selection survive)
  const statuses = new Map();
  let cursor = null;
  let next = null;

  async function refresh() {
    const asked = { status: filter.value, cursor };
    const doc = await api.get("/api/call/batches", { limit: PAGE, ...asked });
    // The filter or the page changed while this was read: its rows are not the ones asked for now (found: the
    // rows of the old filter shown under the new one until the next poll). The poller reads again at once.
    if (asked.status !== filter.value || asked.cursor !== cursor) return;
    const { batches, nextCursor } = doc.data;
    next = nextCursor;
    const now = Date.now();
    const seen = new Set();
    batches.forEach((b, index) => {
      seen.add(b.batchId);
      samples.add(b.batchId, b.counters, now);
      let row = rows.get(b.batchId);
      if (!row) {
        row = makeRow(b);
        rows.set(b.batchId, row);
      }
      updateRow(row, b, samples.perMinute(b.batchId));
      if (tbody.children[index] !== row.tr) tbody.insertBefore(row.tr, tbody.children[index] || null);
      const before = statuses.get(b.batchId);
      if (before && before !== b.status) announce(`Batch ${b.name} is now ${label(b.status)}.`);
      statuses.set(b.batchId, b.status);
    });
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    empty.hidden = batches.length > 0;
    if (!batches.length && !empty.firstChild) {
      empty.append(filter.value || cursor ? "No batches here." : "No batches yet. ",
        filter.value || cursor ? "" : h("a", { href: "#/batches/new" }, "Create one"));
    }
    older.hidden = !next;
    newest.hidden = cursor === null;
    updated.textContent = `Updated ${clock(now)}; refreshed every ${POLL_MS / 1000} s.`;
  }

  const poller = poll(refresh, POLL_MS, (err) => {
    problem.textContent = err ? `Could not refresh: ${err.message}. Retrying…` : "";
  });
  function restart() {
    clear(tbody);
    clear(empty);
    rows.clear();
    poller.now();
  }
  filter.addEventListener("change", () => { cursor = null; restart(); });
  older.addEventListener("click", () => { cursor = next; restart(); });
  newest.addEventListener("click", () => { cursor = null; restart(); });
  return () => poller.stop();
}

function makeRow(b) {
  const cells = {
    link: h("a", { href: `#/batches/${b.batchId}` }),
    status: h("td", {}),
    progress: h("progress", { max: 1, value: 0 }),
    finishedText: h("span", {}),
    inFlight: h("td", { class: "num" }),
    waiting: h("td", { class: "num" }),
    outcomes: h("td", { class: "outcomes" }),
    rate: h("td", { class: "num" }),
  };
  cells.tr = h("tr", { "data-batch-id": b.batchId },
    h("th", { scope: "row" }, cells.link),
    cells.status,
    h("td", { class: "progress-cell" }, cells.progress, " ", cells.finishedText),
    cells.inFlight, cells.waiting, cells.outcomes, cells.rate);
  return cells;
}

function updateRow(row, b, perMinute) {
  const c = b.counters;
  row.link.textContent = b.name;
  if (row.status.dataset.status !== b.status) {
    clear(row.status).append(badge(b.status));
    row.status.dataset.status = b.status;
  }
  row.progress.max = Math.max(1, c.scheduled);
  row.progress.value = c.finished;
  row.progress.setAttribute("aria-label", `${num(c.finished)} of ${num(c.scheduled)} calls finished`);
  row.finishedText.textContent = `${num(c.finished)} / ${num(c.scheduled)}`;
  row.inFlight.textContent = `${num(c.inFlight)} / ${num(b.concurrencyLimit)}`;
  row.waiting.textContent = num(c.waiting);
  row.outcomes.textContent = outcomes(c.byOutcome);
  row.rate.textContent = rate(perMinute);
}
