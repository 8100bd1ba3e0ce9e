// Sign-in: a workspace API key, checked against the server before it is kept (sessionStorage only).

import { Api, ApiError, isKeyRefused } from "./api.js";
import { h } from "./dom.js";

export function mountSignIn(root, { signIn, notice }) {
  const input = h("input", {
    id: "api-key", name: "apiKey", type: "password", autocomplete: "off", spellcheck: "false", required: true,
    "aria-describedby": "api-key-hint",
  });
  const error = h("p", { id: "sign-in-error", class: "error", role: "alert" });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "card narrow", novalidate: true },
    h("h1", {}, "Sign in"),
    notice ? h("p", { class: "notice" }, notice) : null,
    h("label", { for: "api-key" }, "Workspace API key"),
    input,
    h("p", { id: "api-key-hint", class: "hint" },
      "The key is kept in this browser tab only, until you sign out or close it. ",
      "With make run, use the demo API key it prints (or the one set with DIALER_DEMO_API_KEY)."),
    button,
    error);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    error.textContent = "";
    input.removeAttribute("aria-invalid");
    if (!key) {
      fail("Enter an API key.");
      return;
    }
    // A header carries printable ASCII only: a character pasted with the key (a zero-width space, a typographic
    // quote) made fetch throw, and the page said the server could not be reached.
    const chars = [...key];
    const odd = chars.findIndex((c) => c < "!" || c > "~");
    if (odd >= 0) {
      const code = chars[odd].codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
      fail(`This is not an API key: character ${odd + 1} is U+${code}, and a key is made of printable ASCII ` +
        "characters only (was something pasted with it?).");
      return;
    }
    button.disabled = true;
    button.textContent = "Checking…";
    try {
      await new Api(key).get("/api/agents");
      signIn(key);
    } catch (err) {
      if (isKeyRefused(err)) fail(`This API key was not accepted (${err.detail}). Check it and try again.`);
      else if (err instanceof ApiError && err.code === 0) fail(`${err.title}. Is the dialer running?`);
      else fail(`Sign-in failed: ${err.message}`);
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
    }
  });

  function fail(text) {
    error.textContent = text;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }

  root.append(form);
  input.focus();
}
