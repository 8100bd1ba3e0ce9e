// A batch's page: live progress (GET /api/call/batches/{id} polled: its counters, O(1) whatever the
// batch's size), a chart of the samples, the operators' moves, a CSV upload and the batch's calls.

import { outcomes, POLL_MS, rate } from "./batches.js";
import { mountCalls } from "./calls.js";
import { chart, legend } from "./chart.js";
import { ask as askAbout, badge, clear, clock, errorLine, h, label, num, poll, time, uid } from "./dom.js";
import { FormKey } from "./keys.js";
import { mountUpload } from "./upload.js";

const ALLOWED = {  // the moves each status allows (dialer/core/machine.py)
  start: ["pending", "paused"],
  stop: ["running"],
  cancel: ["pending", "running", "paused", "completed"],
  retry: ["running", "paused", "completed"],
};
const RETRYABLE = ["busy", "no_answer", "failed", "machine"];
const SPOKEN_EVERY_MS = 15000;  // the live region's progress sentence, at most this often
const ask = (title, body, confirmLabel) => askAbout(title, body, confirmLabel, "Keep the batch as it is");

function field(name, value) {
  return [h("dt", {}, name), h("dd", { "data-counter": name }, value)];
}

const COUNTERS = ["Status", "Finished", "In flight / limit", "Queued", "Dialled", "Calls/min", "Finished by outcome",
  "Retries asked"];

export function mountBatch(root, ctx, batchId) {
  const { api, samples, announce } = ctx;
  const title = h("h1", {}, "Batch");
  const statusHolder = h("span", { class: "status-holder" });
  const buttons = {
    start: h("button", { type: "button" }, "Start"),
    stop: h("button", { type: "button" }, "Stop"),
    cancel: h("button", { type: "button", class: "danger" }, "Cancel…"),
    retry: h("button", { type: "button", class: "secondary" }, "Retry…"),
  };
  for (const button of Object.values(buttons)) button.disabled = true;  // until the batch is read
  const said = h("p", { class: "notice", role: "status" });
  const problem = h("p", { class: "error", role: "alert" });
  const errors = errorLine(problem);
  const counters = h("dl", { class: "counters" });
  const spoken = h("p", { class: "visually-hidden", "aria-live": "polite", "aria-atomic": "true" });
  const chartId = uid("chart");
  const chartHolder = h("div", { class: "chart-holder" });
  const settings = h("dl", { class: "settings" });
  const updated = h("p", { class: "hint" });
  const uploadHolder = h("div");
  const callsHolder = h("section", { class: "card", "aria-labelledby": "calls-heading" });

  const parts = [  // what a batch's page shows (hidden when there is no such batch)
    h("div", { class: "actions", role: "group", "aria-label": "Batch actions" }, Object.values(buttons)),
    h("section", { class: "card", "aria-labelledby": "progress-heading" },
      h("h2", { id: "progress-heading" }, "Progress"), counters, spoken, updated),
    h("section", { class: "card", "aria-labelledby": "chart-heading" },
      h("h2", { id: "chart-heading" }, "Calls over time"),
      h("p", { class: "hint" }, "Sampled from the batch's counters while the console is open in this tab."),
      chartHolder, legend()),
    h("details", { class: "card" }, h("summary", {}, "Settings"), settings),
    uploadHolder, callsHolder];
  root.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/batches" }, "← All batches")),
    h("div", { class: "page-head start" }, title, statusHolder),
    parts[0], said, problem, ...parts.slice(1));

  let batch = null;
  let missing = false;  // the batch is not there (404, 403): the page says so and stops polling
  let lastSpoken = 0;
  let settingsOf = null;
  // The counters' cells are made once and updated in place: a screen reader's place survives the polls.
  const cells = {};
  for (const name of COUNTERS) {
    const [dt, dd] = field(name, "");
    cells[name] = dd;
    counters.append(dt, dd);
  }
  const progress = h("progress", { max: 1, value: 0 });
  const finishedText = h("span");
  cells.Finished.append(progress, " ", finishedText);
  const calls = mountCalls(callsHolder, ctx, batchId);
  mountUpload(uploadHolder, ctx, batchId, { onImported: () => { poller.now(); calls.load(); } });

  function render(b) {
    const c = b.counters;
    const perMinute = samples.perMinute(b.batchId);
    title.textContent = b.name;
    clear(statusHolder).append(badge(b.status));
    for (const [move, button] of Object.entries(buttons)) button.disabled = !ALLOWED[move].includes(b.status);
    uploadHolder.hidden = b.status === "cancelled" || b.status === "failed";  // no calls can be added to them
    progress.max = Math.max(1, c.scheduled);
    progress.value = c.finished;
    progress.setAttribute("aria-label", `${num(c.finished)} of ${num(c.scheduled)} calls finished`);
    finishedText.textContent = `${num(c.finished)} / ${num(c.scheduled)}`;
    cells.Status.textContent = label(b.status);
    cells["In flight / limit"].textContent = `${num(c.inFlight)} / ${num(b.concurrencyLimit)}`;
    cells.Queued.textContent = num(c.waiting);
    cells.Dialled.textContent = `${num(c.dispatched)} calls, ${num(c.attempts)} attempts`;
    cells["Calls/min"].textContent = rate(perMinute);
    cells["Finished by outcome"].textContent = outcomes(c.byOutcome);
    cells["Retries asked"].textContent = num(b.retryCount);
    const now = Date.now();
    if (now - lastSpoken >= SPOKEN_EVERY_MS) {
      spoken.textContent = `${b.name}: ${label(b.status)}, ${num(c.finished)} of ${num(c.scheduled)} calls finished, ` +
        `${num(c.inFlight)} in flight, ${num(c.waiting)} queued.`;
      lastSpoken = now;
    }
    clear(chartHolder).append(chart(samples.series(b.batchId), chartId));
    if (settingsOf !== b.updatedAt) renderSettings(b);
    updated.textContent = `Updated ${clock(now)}; refreshed every ${POLL_MS / 1000} s.`;
  }

  function renderSettings(b) {
    settingsOf = b.updatedAt;
    const w = b.callingWindow;
    clear(settings).append(
      ...field("Calling window", `${w.start}–${w.end}, ${w.days.join(", ")} (callee's local time)`),
      ...field("Time zone", b.timezone || "from each number, else the agent's"),
      ...field("Calling numbers", b.callingNumbers.join(", ")),
      ...field("Retry policy", b.retry.maxAttempts > 1
        ? `up to ${b.retry.maxAttempts} attempts, ${b.retry.delaySeconds} s apart, on ${b.retry.on.map(label).join(", ")}`
        : "no automatic retry"),
      ...field("Ringing timeout", `${b.ringingTimeoutSeconds} s`),
      ...field("Compliance", `${b.compliance || "the workspace's profile"}` +
        (b.stateField ? `; the callee's state also from the variable “${b.stateField}”` : "")),
      ...field("Scheduled start", b.scheduledAt ? time(b.scheduledAt) : "—"),
      ...field("Created", time(b.createdAt)),
      ...field("Batch id", b.batchId));
  }

  async function refresh() {
    let doc;
    try {
      doc = await api.get(`/api/call/batches/${batchId}`);
    } catch (err) {
      if (err.code !== 404 && err.code !== 403) throw err;  // retried by the poller
      // Not this workspace's batch (or deleted): nothing to show, nothing to retry.
      missing = true;
      poller.stop();
      title.textContent = "No such batch";
      errors.say(`No batch ${batchId} in this workspace (${err.detail || err.message}).`);
      for (const part of parts) part.hidden = true;
      return;
    }
    const b = doc.data;
    samples.add(b.batchId, b.counters);
    if (batch && batch.status !== b.status) announce(`Batch ${b.name} is now ${label(b.status)}.`);
    batch = b;
    render(b);
    calls.tick();
  }

  const poller = poll(refresh, POLL_MS, (err) => {
    if (!missing) errors.refreshed(err);
  });

  const retryKeys = new FormKey(`console-retry-${batchId}`);
  async function move(name, busyLabel, body) {
    const button = buttons[name];
    const text = button.textContent;
    button.disabled = true;
    button.textContent = busyLabel;
    said.textContent = "";
    errors.say("");
    // Retry is the one move that is not the same when done twice (a second one retries again): it goes under a
    // key, so Retry clicked again after a lost answer gets the first answer (start, stop, cancel need none).
    const headers = name === "retry" ? { "Idempotency-Key": retryKeys.for(body) } : {};
    try {
      const doc = await api.post(`/api/call/batches/${batchId}/${name}`, body, { headers });
      if (name === "retry") retryKeys.answered();
      said.textContent = `${doc.message}.`;  // a status region: read out
      calls.load();  // the calls as the move left them (not at the table's next refresh)
    } catch (err) {
      if (name === "retry") retryKeys.answered(err);
      const verb = text.replace("…", "");
      // No answer is not a refusal: the request may have been done (found: "Stop refused: … Failed to fetch"
      // while the server restarted, the batch stopped).
      if (err.code === 0) errors.say(`${verb}: no answer from the server (${err.detail}). The status above shows whether it was done.`);
      else if (err.code >= 500) errors.say(`${verb} failed: ${err.detail || err.message}. Try again.`);
      else errors.say(`${verb} refused: ${err.detail || err.message}`);
    } finally {
      button.textContent = text;
      poller.now();
    }
  }

  buttons.start.addEventListener("click", () => move("start", "Starting…"));
  buttons.stop.addEventListener("click", () => move("stop", "Stopping…"));
  buttons.cancel.addEventListener("click", async () => {
    const hang = uid("hangup");
    const answer = await ask("Cancel this batch?", [
      h("p", {}, "Waiting calls are cancelled and the batch cannot run again. Calls in flight end normally unless you hang them up."),
      h("p", { class: "check" }, h("input", { type: "checkbox", id: hang, name: "hangUp" }),
        h("label", { for: hang }, "Hang up calls in flight"))], "Cancel the batch");
    if (answer) move("cancel", "Cancelling…", { hangUp: answer.has("hangUp") });
  });
  buttons.retry.addEventListener("click", async () => {
    const boxes = RETRYABLE.map((o) => {
      const id = uid("retry");
      return h("p", { class: "check" }, h("input", { type: "checkbox", id, name: "outcomes", value: o, checked: true }),
        h("label", { for: id }, label(o)));
    });
    const answer = await ask("Retry finished calls?", [
      h("fieldset", {}, h("legend", {}, "Calls whose last outcome is"), boxes),
    ], "Retry these calls");
    if (!answer) return;
    const chosen = answer.getAll("outcomes");
    if (!chosen.length) {
      errors.say("Retry: choose at least one outcome.");
      return;
    }
    move("retry", "Retrying…", { outcomes: chosen });
  });

  return () => poller.stop();
}
