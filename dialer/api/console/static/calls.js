// A batch's calls, one page at a time (GET /api/call/batches/{id}/calls with a status filter and the
// cursor of the page before): never more than one page of calls in the browser, whatever the batch's size.

import { badge, clear, h, num, time } from "./dom.js";

const GROUPS = [
  { value: "", name: "All statuses" },
  { value: "queued,held", name: "Waiting (queued, held)" },
  { value: "dialing,ringing,in_progress", name: "In flight (dialing, ringing, in progress)" },
  { value: "completed,busy,no_answer,failed,cancelled,skipped", name: "Finished (any outcome)" },
  ...["queued", "held", "dialing", "ringing", "in_progress", "completed", "busy", "no_answer", "failed",
    "cancelled", "skipped"].map((s) => ({ value: s, name: s.replaceAll("_", " ") })),
];
const SIZES = [25, 50, 100];
const REFRESH_EVERY = 3;  // batch polls between two reads of the page shown (when kept up to date)

// The rule that moved or stopped a call (deferred or suppressed): its last history entry naming one.
export function ruleOf(call) {
  const entry = [...(call.history || [])].reverse().find((e) => e.rule);
  return entry ? entry.rule : null;
}

function variables(vars) {
  const text = Object.entries(vars || {})
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ");
  return text.length > 80 ? `${text.slice(0, 79)}…` : text || "—";
}

export function mountCalls(root, { api }, batchId) {
  const filter = h("select", { id: "calls-status" }, GROUPS.map((g) => h("option", { value: g.value }, g.name)));
  const size = h("select", { id: "calls-size" },
    SIZES.map((n) => h("option", { value: n, selected: n === 25 }, String(n))));
  const live = h("input", { type: "checkbox", id: "calls-live", checked: true });
  const problem = h("p", { class: "error", role: "alert" });
  const tbody = h("tbody");
  const prev = h("button", { type: "button", class: "secondary" }, "Previous page");
  const next = h("button", { type: "button", class: "secondary" }, "Next page");
  const where = h("span", { class: "hint", "aria-live": "polite" });
  const refreshButton = h("button", { type: "button", class: "secondary" }, "Refresh");

  root.append(
    h("h2", { id: "calls-heading" }, "Calls"),
    h("div", { class: "toolbar" },
      h("label", { for: "calls-status" }, "Status"), filter,
      h("label", { for: "calls-size" }, "Per page"), size,
      h("span", { class: "check" }, live, h("label", { for: "calls-live" }, "Keep this page up to date")),
      refreshButton),
    problem,
    h("div", { class: "table-wrap" }, h("table", { class: "calls", "aria-labelledby": "calls-heading" },
      h("thead", {}, h("tr", {}, ["Phone number", "Status", "Attempts", "Outcome", "Next attempt", "Updated",
        "Variables"].map((c) => h("th", { scope: "col" }, c)))),
      tbody)),
    h("div", { class: "pager" }, prev, where, next));

  const cursors = [null];  // the cursor of each page seen so far: page n is read after cursors[n]
  let page = 0;
  let nextCursor = null;
  let ticks = 0;
  let asked = 0;  // reads asked for; only the latest one's answer is shown

  // Found by an exploratory run: a read in flight made the next one (a click on Next page, a new filter) be
  // dropped, and the old read's rows were shown under the new page's number or filter.
  async function load() {
    asked += 1;
    const mine = asked;
    try {
      const doc = await api.get(`/api/call/batches/${batchId}/calls`,
        { status: filter.value, limit: size.value, cursor: cursors[page] });
      if (mine !== asked) return;  // a later read was asked for: its answer is the one to show
      const { calls } = doc.data;
      nextCursor = doc.data.nextCursor;
      clear(tbody);
      for (const c of calls) {
        tbody.append(h("tr", { "data-call-id": c.callId },
          h("td", {}, c.phoneNumber, c.extension ? ` ext. ${c.extension}` : ""),
          h("td", {}, badge(c.status)),
          h("td", { class: "num" }, num(c.attempts)),
          h("td", {}, c.outcome ? c.outcome.replaceAll("_", " ") : "—",
            ruleOf(c) ? h("div", { class: "hint rule" }, ruleOf(c)) : null),
          h("td", {}, c.status === "queued" ? time(c.nextAttemptAt) : "—"),
          h("td", {}, time(c.updatedAt)),
          h("td", { class: "vars", title: variables(c.variables) }, variables(c.variables))));
      }
      if (!calls.length) {
        tbody.append(h("tr", {}, h("td", { colspan: 7, class: "empty" },
          page ? "No more calls." : "No calls with this status.")));
      }
      prev.disabled = page === 0;
      next.disabled = !nextCursor;
      where.textContent = `Page ${page + 1}${calls.length ? `, ${num(calls.length)} calls` : ""}`;
      problem.textContent = "";
    } catch (err) {
      if (mine === asked) problem.textContent = `Could not read the calls: ${err.message}`;
    }
  }

  function restart() {
    cursors.length = 1;
    page = 0;
    load();
  }
  filter.addEventListener("change", restart);
  size.addEventListener("change", restart);
  refreshButton.addEventListener("click", load);
  prev.addEventListener("click", () => { if (page > 0) { page -= 1; load(); } });
  next.addEventListener("click", () => {
    if (!nextCursor) return;
    cursors[page + 1] = nextCursor;
    page += 1;
    load();
  });
  load();
  return {
    // called on each poll of the batch: the page shown is read again every few polls
    tick() {
      ticks += 1;
      if (live.checked && ticks % REFRESH_EVERY === 0) load();
    },
    load,
  };
}
