// The Webhooks page: the workspace's partner endpoints (GET /api/webhooks/endpoints, polled), adding one
// (its signing secret shown once), disabling, enabling, rotating the secret (shown once), a test ping,
// "recover since" and deleting; below, the recent deliveries with their attempts (deliveries.js).

import { mountDeliveries } from "./deliveries.js";
import { ask, busyWhile, clear, errorLine, h, onSubmit, poll, time, uid } from "./dom.js";
import { FormKey } from "./keys.js";

const POLL_MS = 2000;
// dialer/core/webhook_events.py EVENT_TYPES (tests/test_console_files.py keeps the two the same).
export const EVENT_TYPES = ["call.ringing", "call.answered", "call.completed", "call.failed", "call.busy",
  "call.no_answer", "call.machine", "call.cancelled", "call.skipped", "call.suppressed", "call.retry_scheduled",
  "batch.started",
  "batch.paused", "batch.completed", "batch.cancelled", "enrollment.accepted", "webhook.test"];

function state(e) {
  if (e.disabled) return `Disabled: ${e.disabledReason || "by an operator"}`;
  if (e.failingSince) return `Failing since ${time(e.failingSince)}`;
  return "Active";
}

// datetime-local's value for a moment (the operator's local time, to the minute).
function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

export function mountWebhooks(root, { api, announce }) {
  const said = h("p", { class: "notice", role: "status" });
  const problem = h("p", { class: "error", role: "alert" });
  const errors = errorLine(problem);
  const secretBox = h("section", { class: "card secret", "aria-labelledby": "secret-heading", hidden: true });
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true }, "No endpoints yet: add one below.");
  const deliveriesHolder = h("section", { class: "card", "aria-labelledby": "deliveries-heading" });

  const urlId = uid("hook-url");
  const descId = uid("hook-desc");
  const url = h("input", { id: urlId, name: "url", type: "url", required: true, size: 48,
    placeholder: "https://partner.example/hooks", "aria-describedby": `${urlId}-hint` });
  const description = h("input", { id: descId, name: "description", type: "text", size: 32 });
  const checks = EVENT_TYPES.map((type) => {
    const id = uid("event");
    return h("span", { class: "check" }, h("input", { type: "checkbox", id, value: type }), h("label", { for: id }, type));
  });
  const form = h("form", {},
    h("div", { class: "field" }, h("label", { for: urlId }, "Endpoint URL"), url,
      h("span", { class: "hint", id: `${urlId}-hint` },
        "https:// to a public address (http:// to loopback only when the server allows insecure endpoints).")),
    h("div", { class: "field" }, h("label", { for: descId }, "Description (optional)"), description),
    h("fieldset", {}, h("legend", {}, "Events (none ticked: every event)"), h("div", { class: "days" }, checks)),
    h("button", { type: "submit" }, "Add endpoint"));
  // Open while the workspace has no endpoint; then folded under the list, the deliveries in view.
  const adding = h("details", { class: "card", open: true }, h("summary", {}, h("h2", { class: "inline-heading" },
    "Add an endpoint")), form);

  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Webhooks")),
    h("p", { class: "hint" }, "Partner endpoints receive each event as a signed POST (Standard Webhooks), retried until they answer 2xx."),
    said, problem, secretBox,
    h("section", { class: "card", "aria-labelledby": "endpoints-heading" },
      h("h2", { id: "endpoints-heading" }, "Endpoints"),
      h("div", { class: "table-wrap" }, h("table", { class: "endpoints" },
        h("caption", { class: "visually-hidden" }, "The workspace's webhook endpoints"),
        h("thead", {}, h("tr", {}, ["URL", "Events", "State", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        tbody)),
      empty),
    adding, deliveriesHolder);

  function tell(text) {
    said.textContent = text;
    errors.say("");
    announce(text);
  }

  function showSecret(what, endpoint) {
    const inputId = uid("secret");
    const field = h("input", { id: inputId, type: "text", readonly: true, value: endpoint.secret, size: 56,
      class: "secret-value", "aria-describedby": `${inputId}-hint` });
    const copy = h("button", { type: "button", class: "secondary" }, "Copy");
    const done = h("button", { type: "button" }, "I have copied it");
    copy.addEventListener("click", async () => {
      field.select();
      try {
        await navigator.clipboard.writeText(endpoint.secret);
        announce("The secret is copied.");
      } catch {
        announce("Press Ctrl+C (or ⌘C) to copy the selected secret.");
      }
    });
    done.addEventListener("click", () => {
      clear(secretBox);
      secretBox.hidden = true;
    });
    clear(secretBox).append(
      h("h2", { id: "secret-heading" }, `${what}: copy its secret now`),
      h("p", {}, "Endpoint ", h("code", {}, endpoint.url)),
      h("div", { class: "field wide" }, h("label", { for: inputId }, "Signing secret"), field),
      h("p", { class: "hint", id: `${inputId}-hint` },
        "Shown this once: copy it now (select it, or Copy) into the partner's verifier; it is never shown again."),
      h("div", { class: "actions" }, copy, done));
    secretBox.hidden = false;
    field.focus();
    field.select();
  }

  async function act(work, success) {
    try {
      const answer = await work();
      tell(success(answer));
      endpoints.now();
      deliveries.refresh();
    } catch (err) {
      said.textContent = "";
      errors.say(err.message);
    }
  }

  function row(e) {
    const label = (verb) => `${verb} ${e.url}`;
    const button = (text, verb, onclick, cls = "secondary") =>
      h("button", { type: "button", class: cls, "aria-label": label(verb), onclick }, text);
    const path = `/api/webhooks/endpoints/${e.endpointId}`;
    return h("tr", { "data-endpoint-id": e.endpointId },
      h("th", { scope: "row" }, h("code", {}, e.url), e.description ? h("div", { class: "hint" }, e.description) : null),
      h("td", {}, e.events.length ? e.events.join(", ") : "every event"),
      h("td", { class: "endpoint-state" }, state(e)),
      h("td", {}, h("div", { class: "actions compact" },
        button("Send test ping", "Send a test ping to", busyWhile(() => act(() => api.post(`${path}/test`),
          () => `Test ping queued for ${e.url}.`)), ""),
        button("Deliveries", "Show the deliveries of", () => deliveries.show(e.endpointId)),
        button(e.disabled ? "Enable" : "Disable", e.disabled ? "Enable" : "Disable", busyWhile(() =>
          act(() => api.call("PATCH", path, { json: { disabled: !e.disabled } }),
            () => `${e.url} is ${e.disabled ? "enabled" : "disabled"}.`))),
        button("Rotate secret", "Rotate the secret of", async () => {
          const ok = await ask("Rotate the signing secret?", h("p", {},
            `A new secret signs deliveries to ${e.url}; the old one keeps signing beside it for 24 hours.`), "Rotate");
          if (ok) act(async () => showSecret("Secret rotated", (await api.post(`${path}/rotate-secret`)).data),
            () => `The secret of ${e.url} is rotated.`);
        }),
        button("Recover…", "Recover the failed messages of", async () => {
          const sinceId = uid("since");
          const data = await ask("Send failed messages again", h("div", { class: "field" },
            h("label", { for: sinceId }, "Failed messages created since"),
            h("input", { id: sinceId, name: "since", type: "datetime-local", required: true,
              value: localInput(Date.now() - 24 * 3600 * 1000) })), "Send them again");
          if (data) act(() => api.post(`${path}/recover`, { since: new Date(data.get("since")).toISOString() }),
            (doc) => `${doc.data.recovered} failed message(s) to ${e.url} will be sent again.`);
        }),
        button("Delete…", "Delete", async () => {
          const ok = await ask("Delete this endpoint?", h("p", {},
            `${e.url} receives nothing more, and its delivery log is deleted.`), "Delete");
          if (ok) act(() => api.call("DELETE", path), () => `${e.url} is deleted.`);
        }, "danger"))));
  }

  let known = null;
  let shown = "";
  async function refresh() {
    const first = known === null;
    known = (await api.get("/api/webhooks/endpoints")).data.endpoints;
    if (first && known.length) adding.open = false;
    const signature = JSON.stringify(known);
    if (signature !== shown) {  // rebuilt only when something changed: a selection (a URL being copied) survives
      const had = tbody.contains(document.activeElement) ? document.activeElement.getAttribute("aria-label") : null;
      clear(tbody).append(...known.map(row));
      if (had) tbody.querySelector(`[aria-label="${CSS.escape(had)}"]`)?.focus();
      shown = signature;
    }
    empty.hidden = known.length > 0;
    deliveries.setEndpoints(known);
  }

  const keys = new FormKey("console-endpoint");
  onSubmit(form, async () => {
    const events = checks.map((c) => c.querySelector("input")).filter((c) => c.checked).map((c) => c.value);
    const body = { url: url.value.trim(), events, description: description.value.trim() };
    await act(async () => {
      let created;
      try {
        created = (await api.post("/api/webhooks/endpoints", body, { headers: { "Idempotency-Key": keys.for(body) } })).data;
        keys.answered();
      } catch (err) {
        keys.answered(err);
        throw err;
      }
      showSecret("Endpoint added", created);
      form.reset();
      adding.open = false;
      return created;
    }, (created) => `Endpoint ${created.url} added. Copy its secret now: it is shown once.`);
  });

  const deliveries = mountDeliveries(deliveriesHolder, { api, announce, tell });
  const endpoints = poll(refresh, POLL_MS, errors.refreshed);
  return () => {
    endpoints.stop();
    deliveries.stop();
  };
}
