// The console's shell: the session (a workspace API key in sessionStorage only), routes, the live region.

import { Api } from "./api.js";
import { mountBatch } from "./batch.js";
import { mountBatches } from "./batches.js";
import { mountCreate } from "./create.js";
import { mountDnc } from "./dnc.js";
import { clear } from "./dom.js";
import { Samples } from "./samples.js";
import { mountSignIn } from "./signin.js";
import { mountWebhooks } from "./webhooks.js";

const KEY = "dialer.apiKey";
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("sign-out");
const announcer = document.getElementById("announcer");
const samples = new Samples();
let unmount = () => {};
let signInNotice = "";

function announce(text) {
  // Polite: read when the reader is idle. Re-set so that the same sentence twice is read twice.
  announcer.textContent = "";
  window.setTimeout(() => { announcer.textContent = text; }, 50);
}

function session() {
  const key = window.sessionStorage.getItem(KEY);
  return key ? new Api(key, keyRefused) : null;
}

function keyRefused(err) {
  signOut(`Your API key is no longer accepted (${err.detail}). Sign in again.`);
}

function signIn(key) {
  window.sessionStorage.setItem(KEY, key);
  signInNotice = "";
  if (window.location.hash.startsWith("#/batches") || ["#/webhooks", "#/dnc"].includes(window.location.hash)) route();
  else window.location.hash = "#/batches";
}

function signOut(notice = "") {
  window.sessionStorage.removeItem(KEY);
  samples.clear();
  signInNotice = notice;
  if (window.location.hash === "#/signin") route();
  else window.location.hash = "#/signin";
}

function route() {
  unmount();
  unmount = () => {};
  clear(main);
  const api = session();
  const hash = window.location.hash;
  nav.hidden = !api;
  signOutButton.hidden = !api;
  if (!api) {
    document.title = "Sign in · Dialer console";
    unmount = mountSignIn(main, { signIn, notice: signInNotice }) || unmount;
    return;
  }
  const ctx = { api, samples, announce, navigate: (to) => { window.location.hash = to; } };
  // Our ids (24 hex digits) and the enrollment face's UUIDs.
  const batch = /^#\/batches\/([0-9a-f]{24}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i.exec(hash);
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === hash) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (hash === "#/batches/new") {
    document.title = "New batch · Dialer console";
    unmount = mountCreate(main, ctx) || unmount;
  } else if (hash === "#/webhooks") {
    document.title = "Webhooks · Dialer console";
    unmount = mountWebhooks(main, ctx) || unmount;
  } else if (hash === "#/dnc") {
    document.title = "Do not call · Dialer console";
    unmount = mountDnc(main, ctx) || unmount;
  } else if (batch) {
    document.title = "Batch · Dialer console";
    unmount = mountBatch(main, ctx, batch[1]) || unmount;
  } else {
    document.title = "Batches · Dialer console";
    unmount = mountBatches(main, ctx) || unmount;
  }
}

window.addEventListener("hashchange", () => {
  route();
  // A new page: focus goes to it (unless the page put it somewhere itself), as a page load would.
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
});
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
signOutButton.addEventListener("click", () => signOut("You are signed out."));
window.addEventListener("pagehide", () => samples.save());
route();
