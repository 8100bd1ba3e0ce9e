// The Webhooks page's delivery log: the newest messages of the workspace or of one endpoint
// (GET /api/webhooks/messages, polled), each with its status and every attempt (time, HTTP status or
// error, response time, the first bytes of the answer), and a Retry button on each failed message.

import { badge, clear, clock, errorLine, h, poll, time, uid } from "./dom.js";

const POLL_MS = 2000;
const PAGE = 50;
const ANSWER_CHARS = 160;  // of the 1 KiB the log keeps

function attemptItem(a) {
  const outcome = a.error ? (a.httpStatus ? `HTTP ${a.httpStatus}, ${a.error}` : a.error) : `HTTP ${a.httpStatus}`;
  const ok = !a.error && a.httpStatus >= 200 && a.httpStatus < 300;
  const answer = a.response ? (a.response.length > ANSWER_CHARS ? `${a.response.slice(0, ANSWER_CHARS)}…` : a.response) : "";
  return h("li", { class: ok ? "attempt ok" : "attempt failed" },
    h("span", { class: "attempt-time" }, time(a.at)), " · ",
    h("span", { class: "attempt-outcome" }, outcome), " · ",
    h("span", { class: "attempt-ms" }, `${a.ms} ms`),
    answer ? [" · ", h("q", { class: "attempt-answer" }, answer)] : null);
}

export function mountDeliveries(root, { api, announce, tell }) {
  const endpointId = uid("deliveries-endpoint");
  const statusId = uid("deliveries-status");
  const endpointFilter = h("select", { id: endpointId }, h("option", { value: "" }, "All endpoints"));
  const statusFilter = h("select", { id: statusId }, h("option", { value: "" }, "Any status"),
    ["pending", "delivered", "failed"].map((s) => h("option", { value: s }, s)));
  const updated = h("span", { class: "hint", id: "deliveries-updated" }, "Loading…");
  const problem = h("p", { class: "error", role: "alert" });
  const errors = errorLine(problem);
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true }, "No deliveries yet.");
  root.append(
    h("h2", { id: "deliveries-heading" }, "Recent deliveries"),
    h("div", { class: "toolbar" }, h("label", { for: endpointId }, "Endpoint"), endpointFilter,
      h("label", { for: statusId }, "Status"), statusFilter, updated),
    problem,
    h("div", { class: "table-wrap" }, h("table", { class: "deliveries", "aria-describedby": "deliveries-updated" },
      h("caption", { class: "visually-hidden" }, "Webhook messages, newest first, with their attempts"),
      h("thead", {}, h("tr", {}, ["Event", "Endpoint", "Status", "Created", "Attempts", ""].map((c) =>
        h("th", { scope: "col" }, c)))),
      tbody)),
    empty);

  const urls = new Map();
  let shown = "";
  let listed = "";

  async function retry(m) {
    try {
      await api.post(`/api/webhooks/messages/${encodeURIComponent(m.messageId)}/retry`);
      tell(`The ${m.type} message to ${urls.get(m.endpointId) || "its endpoint"} is sent again.`);
      poller.now();
    } catch (err) {
      errors.say(err.message);
    }
  }

  function row(m) {
    const where = urls.get(m.endpointId) || m.endpointId;
    const status = m.status === "pending" && m.nextAttemptAt
      ? [badge("pending"), h("div", { class: "hint" }, `next attempt ${time(m.nextAttemptAt)}`)] : badge(m.status);
    return h("tr", { "data-message-id": m.messageId },
      h("th", { scope: "row" }, m.type, h("div", { class: "hint" }, m.messageId)),
      h("td", {}, h("code", {}, where)),
      h("td", {}, status),
      h("td", {}, time(m.createdAt)),
      h("td", {}, m.attempts.length ? h("ol", { class: "attempts" }, m.attempts.map(attemptItem)) : "none yet"),
      h("td", {}, m.status === "failed" ? h("button", { type: "button", class: "secondary",
        "aria-label": `Retry the ${m.type} message ${m.messageId}`, onclick: () => retry(m) }, "Retry") : null));
  }

  async function refresh() {
    const doc = await api.get("/api/webhooks/messages",
      { limit: PAGE, endpointId: endpointFilter.value, status: statusFilter.value });
    const { messages } = doc.data;
    const now = Date.now();
    const signature = JSON.stringify([[...urls], messages.map((m) => [m.messageId, m.status, m.attempts.length])]);
    if (signature !== shown) {  // rebuilt only when something changed (focus is put back on its button)
      const had = tbody.contains(document.activeElement) ? document.activeElement.getAttribute("aria-label") : null;
      clear(tbody).append(...messages.map(row));
      if (had) tbody.querySelector(`[aria-label="${CSS.escape(had)}"]`)?.focus();
      shown = signature;
    }
    empty.hidden = messages.length > 0;
    updated.textContent = `Updated ${clock(now)}; refreshed every ${POLL_MS / 1000} s.`;
  }

  const poller = poll(refresh, POLL_MS, errors.refreshed);
  endpointFilter.addEventListener("change", () => poller.now());
  statusFilter.addEventListener("change", () => poller.now());

  return {
    refresh: () => poller.now(),
    stop: () => poller.stop(),
    show(id) {  // one endpoint's deliveries
      endpointFilter.value = id;
      poller.now();
      endpointFilter.focus();
      announce(`Showing the deliveries to ${urls.get(id) || "this endpoint"}.`);
    },
    setEndpoints(endpoints) {
      const names = JSON.stringify(endpoints.map((e) => [e.endpointId, e.url]));
      if (names === listed) return;  // (rebuilding the select would close it under the operator's hand)
      listed = names;
      const chosen = endpointFilter.value;
      urls.clear();
      for (const e of endpoints) urls.set(e.endpointId, e.url);
      clear(endpointFilter).append(h("option", { value: "" }, "All endpoints"),
        endpoints.map((e) => h("option", { value: e.endpointId }, e.url)));
      endpointFilter.value = urls.has(chosen) ? chosen : "";
      if (chosen && !urls.has(chosen)) poller.now();
    },
  };
}
