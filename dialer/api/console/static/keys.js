// Idempotency-Keys made in the browser: the server does a write once per key and answers a retry from its
// record (docs/api.md, "Retrying a write"), so an answer lost on the way (the server restarting, the network)
// can be asked for again without doing the write twice.

// A short ASCII digest of a string (cyrb53): a key is printable ASCII, what it is made from need not be.
export function digest(text) {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}

export function randomKey(prefix = "console") {
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return `${prefix}-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

// A form's key: the same for the same body until an answer comes back, so "Create" clicked again after a
// lost answer gets the first request's answer instead of a second batch or endpoint (found by an exploratory
// run: an endpoint whose creation answer was lost existed with a secret nobody saw, and a retry made another).
// A changed body gets another key; any answer but "no answer", a 5xx (the server kept nothing) or a 409 (the
// key is still in use) ends the key.
export class FormKey {
  constructor(prefix) {
    this.prefix = prefix;
    this.salt = randomKey("");
  }

  for(body) {
    return `${this.prefix}${this.salt}-${digest(JSON.stringify(body))}`;
  }

  answered(err = null) {
    if (err && (err.code === 0 || err.code >= 500 || err.code === 409)) return;
    this.salt = randomKey("");
  }
}
