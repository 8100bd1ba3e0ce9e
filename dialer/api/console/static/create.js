// Creating a batch (POST /api/call/createBatch), then adding its contacts from a CSV file.

import { ask, clear, h, label } from "./dom.js";
import { FormKey } from "./keys.js";
import { mountUpload } from "./upload.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const HHMM = "([01][0-9]|2[0-3]):[0-5][0-9]|24:00";

function row(id, name, control, hint) {
  return h("div", { class: "field" }, h("label", { for: id }, name), control,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null);
}

export function mountCreate(root, ctx) {
  const { api } = ctx;
  const name = h("input", { id: "batch-name", name: "name", required: true, maxlength: 200, autocomplete: "off" });
  const agent = h("select", { id: "batch-agent", name: "agentId", required: true },
    h("option", { value: "" }, "Loading agents…"));
  const limit = h("input", { id: "batch-limit", name: "concurrencyLimit", type: "number", min: 1, max: 1000,
    value: 10, required: true, "aria-describedby": "batch-limit-hint" });
  const start = h("input", { id: "window-start", name: "start", value: "08:00", required: true, pattern: HHMM,
    inputmode: "numeric", size: 5, "aria-describedby": "window-start-hint" });
  const end = h("input", { id: "window-end", name: "end", value: "21:00", required: true, pattern: HHMM,
    inputmode: "numeric", size: 5, "aria-describedby": "window-end-hint" });
  const days = DAYS.map((d) => h("span", { class: "check" },
    h("input", { type: "checkbox", id: `day-${d}`, name: "days", value: d, checked: true }),
    h("label", { for: `day-${d}` }, d)));
  const zone = h("input", { id: "batch-zone", name: "timezone", placeholder: "e.g. America/New_York",
    autocomplete: "off", "aria-describedby": "batch-zone-hint" });
  const attempts = h("input", { id: "retry-attempts", name: "maxAttempts", type: "number", min: 1, max: 20, value: 1,
    "aria-describedby": "retry-attempts-hint" });
  const problem = h("p", { class: "error", role: "alert" });
  // Enabled once the agents are read: a click before that met "Loading agents…" and an error (found under load).
  const submit = h("button", { type: "submit", disabled: true }, "Create batch");
  const form = h("form", { class: "card", novalidate: true },
    row("batch-name", "Name", name),
    row("batch-agent", "Agent", agent),
    row("batch-limit", "Concurrency limit", limit, "Calls in flight at once, 1 to 1,000."),
    h("fieldset", {}, h("legend", {}, "Calling window (the callee's local time)"),
      h("div", { class: "inline" },
        row("window-start", "From", start, "HH:MM"),
        row("window-end", "To", end, "HH:MM; 24:00 is the end of the day")),
      h("div", { class: "days", role: "group", "aria-label": "Days" }, days)),
    row("batch-zone", "Default time zone (optional)", zone,
      "Used for numbers whose zone is not known from the number itself."),
    row("retry-attempts", "Attempts per call", attempts, "1 = no automatic retry; more retries busy and no answer."),
    problem, submit);
  const step = h("div");
  const keys = new FormKey("console-batch");
  root.append(h("h1", {}, "New batch"), form, step);
  name.focus();

  api.get("/api/agents").then((doc) => {
    clear(agent);
    for (const a of doc.data.agents) {
      agent.append(h("option", { value: a.agentId }, `${a.name} (${a.callingNumbers.join(", ")})`));
    }
    if (!doc.data.agents.length) agent.append(h("option", { value: "" }, "No agents in this workspace"));
    submit.disabled = !doc.data.agents.length;
  }).catch((err) => { problem.textContent = `Could not read the agents: ${err.message}`; });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    const invalid = [...form.querySelectorAll("input, select")].find((el) => !el.checkValidity());
    for (const el of form.querySelectorAll("input, select")) {
      if (el.checkValidity()) el.removeAttribute("aria-invalid");
      else el.setAttribute("aria-invalid", "true");
    }
    if (invalid) {
      const what = form.querySelector(`label[for="${invalid.id}"]`);
      problem.textContent = `Check “${what ? what.textContent : invalid.name}”: ${invalid.validationMessage}`;
      invalid.focus();
      return;
    }
    const chosen = days.map((d) => d.querySelector("input")).filter((c) => c.checked).map((c) => c.value);
    if (!chosen.length) {
      problem.textContent = "Choose at least one calling day.";
      return;
    }
    // A window whose start is after its end crosses midnight (the API's rule): said and confirmed, since
    // "21:00" to "08:00" typed for "08:00" to "21:00" would call people through the night (found by an exploratory run).
    if (start.value > end.value) {  // "HH:MM" strings compare as the times they name
      const overnight = await ask("Call through the night?", h("p", {},
        `From ${start.value} to ${end.value} crosses midnight: calls may be placed from ${start.value} until `,
        `${end.value} the next morning, in each callee's local time.`), "Create it so", "Change the window");
      if (!overnight) {
        start.focus();
        return;
      }
    }
    const body = {
      name: name.value.trim(),
      agentId: agent.value,
      concurrencyLimit: Number(limit.value),
      callingWindow: { start: start.value, end: end.value, days: chosen },
    };
    if (zone.value.trim()) body.timezone = zone.value.trim();
    if (Number(attempts.value) > 1) body.retry = { maxAttempts: Number(attempts.value) };
    submit.disabled = true;
    try {
      const { data } = await api.post("/api/call/createBatch", body, { headers: { "Idempotency-Key": keys.for(body) } });
      keys.answered();
      form.remove();
      showCreated(data);
    } catch (err) {
      keys.answered(err);
      problem.textContent = err.code === 0
        ? `The server did not answer (${err.detail}). Create it again: a batch already created is not created twice.`
        : `The batch was not created: ${err.detail || err.message}`;
    } finally {
      submit.disabled = false;
    }
  });

  function showCreated(batch) {
    const open = h("a", { class: "button", href: `#/batches/${batch.batchId}` }, "Open the batch");
    const done = h("p", { class: "notice", role: "status" },
      `Batch “${batch.name}” created (${label(batch.status)}). Add its contacts, or open it.`);
    step.append(done);
    mountUpload(step, ctx, batch.batchId, {
      onImported: (data) => { done.textContent = `${data.added} calls added to “${batch.name}”; it is ${label(data.batchStatus)}.`; },
    });
    step.append(h("p", {}, open));
    done.setAttribute("tabindex", "-1");
    done.focus();
  }
}
