// Building the page: elements from data (text only, never HTML from data), formatting, polling.

export function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function fill(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") el.setAttribute("class", value);
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));  // a string becomes a text node
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let ids = 0;
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

const numbers = new Intl.NumberFormat("en");
export function num(n) {
  return n === null || n === undefined ? "—" : numbers.format(n);
}

export function label(status) {
  return String(status).replaceAll("_", " ");
}

// Today's times as a clock, other days with their date.
export function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function badge(status) {
  return h("span", { class: `badge status-${status}` }, label(status));
}

// A form whose submission cannot run twice at once: from the submit (before any await) until its handler ends,
// a second submit (a double click, Enter pressed again) is dropped and the submit buttons are disabled.
// Found: a double click on "Add endpoint" created two endpoints, one of them with a secret never shown.
export function onSubmit(form, handler) {
  let busy = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    busy = true;
    const buttons = [...form.querySelectorAll('button[type="submit"]')];
    for (const b of buttons) b.disabled = true;
    try {
      await handler(event);
    } finally {
      busy = false;
      for (const b of buttons) b.disabled = false;
    }
  });
}

// A button's click handler, the same way: the button is disabled while `work()` runs (a click on it again does nothing).
export function busyWhile(work) {
  return async (event) => {
    const button = event.currentTarget;
    if (button.disabled) return;
    button.disabled = true;
    try {
      await work();
    } finally {
      button.disabled = false;
    }
  };
}

// A page's error line (a role=alert element), written by its refresh (a poll) and by the operator's moves.
// A refresh that works again clears only its own "Could not refresh" message, never the refusal of a move
// the operator has yet to read (found by an exploratory run: Retry's 409 was wiped by the refresh the move
// itself asked for, so a refused Retry showed nothing; the Webhooks page kept "Could not refresh" for ever
// after the server came back).
export function errorLine(el) {
  let fromRefresh = false;
  return {
    refreshed(err) {
      if (err) {
        el.textContent = `Could not refresh: ${err.message}. Retrying…`;
        fromRefresh = true;
      } else if (fromRefresh) {
        el.textContent = "";
        fromRefresh = false;
      }
    },
    say(text) {
      el.textContent = text;
      fromRefresh = false;
    },
  };
}

// Runs `task` now and then `ms` after each run ends (never two at once), paused while the tab is hidden;
// after a failure it waits longer each time (up to 30 s) and reports it. Returns stop().
export function poll(task, ms, onError = () => {}) {
  let timer = null;
  let stopped = false;
  let failures = 0;
  let running = false;
  let again = false;  // now() was called while a run was in flight: run again as soon as it ends
  async function run() {
    timer = null;
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    if (document.hidden) return;  // resumed by visibilitychange
    running = true;
    try {
      await task();
      failures = 0;
      onError(null);
    } catch (err) {
      failures += 1;
      onError(err);
    } finally {
      running = false;
    }
    const soon = again && !failures;
    again = false;
    if (!stopped) timer = setTimeout(run, soon ? 0 : failures ? Math.min(30000, ms * 2 ** failures) : ms);
  }
  function visible() {
    if (!document.hidden && timer === null && !running && !stopped) run();
  }
  document.addEventListener("visibilitychange", visible);
  run();
  return {
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      document.removeEventListener("visibilitychange", visible);
    },
    now() {  // an immediate refresh (after an operator's action)
      if (timer !== null) clearTimeout(timer);
      timer = null;
      run();
    },
  };
}

// A modal <dialog> question: focus moves into it and back; resolves to the form's data when confirmed,
// null on "Keep" or Escape.
export function ask(title, body, confirmLabel, keepLabel = "Keep it as it is") {
  return new Promise((resolve) => {
    const form = h("form", { method: "dialog" }, h("h2", {}, title), body,
      h("div", { class: "actions" },
        h("button", { type: "submit", value: "confirm" }, confirmLabel),
        h("button", { type: "submit", value: "keep", class: "secondary", autofocus: true }, keepLabel)));
    const dialog = h("dialog", { "aria-label": title }, form);
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      const data = new FormData(form);
      dialog.remove();
      resolve(dialog.returnValue === "confirm" ? data : null);
    });
    dialog.showModal();
  });
}
