// The console's client of the /api/ routes: the workspace key as x-api-key, the envelope unwrapped.

export class ApiError extends Error {
  constructor(code, message, detail, data) {
    super(detail ? `${message}: ${detail}` : message);
    this.code = code;
    this.title = message;
    this.detail = detail || "";
    this.data = data || {};
  }
}

const KEY_REFUSED = /^(invalid|missing) API key/;

export function isKeyRefused(err) {
  return err instanceof ApiError && err.code === 403 && KEY_REFUSED.test(err.detail);
}

export class Api {
  constructor(key, onKeyRefused = () => {}) {
    this.key = key;
    this.onKeyRefused = onKeyRefused;
  }

  // The envelope of a 2xx answer ({message, status, code, errorMessage, data}); an ApiError otherwise.
  async call(method, path, { json, body, query, headers = {} } = {}) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
    }
    const init = { method, headers: { "x-api-key": this.key, ...headers }, cache: "no-store" };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers["Content-Type"] = "application/json";
    } else if (body !== undefined) {
      init.body = body;
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new ApiError(0, "The server could not be reached", String(err && err.message || err));
    }
    let doc = null;
    try {
      doc = await response.json();
    } catch {
      doc = null;
    }
    if (!doc || typeof doc !== "object") {
      throw new ApiError(response.status, `The server answered ${response.status}`, "not a JSON answer");
    }
    if (!response.ok) {
      const err = new ApiError(response.status, doc.message || `Error ${response.status}`, doc.errorMessage, doc.data);
      if (isKeyRefused(err)) this.onKeyRefused(err);
      throw err;
    }
    return doc;
  }

  get(path, query) {
    return this.call("GET", path, { query });
  }

  post(path, json, options = {}) {
    return this.call("POST", path, { json, ...options });
  }
}
