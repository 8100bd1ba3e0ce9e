// The Do-not-call page: the workspace's list (GET /api/dnc, a page at a time, searched by the digits a
// number starts with), adding numbers typed in, importing a file (a CSV with a phone column, or one number
// per line) in chunks under Idempotency-Keys, and removing a number (DELETE /api/dnc/{number}).

import { numbersOf } from "./dncfile.js";
import { ask, busyWhile, clear, h, num, onSubmit, time, uid } from "./dom.js";
import { digest } from "./keys.js";

const PAGE = 50;
const CHUNK = 50000;  // numbers per request when importing a file (the server takes up to 100,000)

export function mountDnc(root, { api, announce }) {
  const said = h("p", { class: "notice", role: "status" });
  const problem = h("p", { class: "error", role: "alert" });
  const tbody = h("tbody");
  const summary = h("p", { class: "hint", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "More numbers");

  const searchId = uid("dnc-search");
  const search = h("input", { id: searchId, type: "search", inputmode: "tel", size: 20, placeholder: "+1212",
    "aria-describedby": `${searchId}-hint` });
  const searchForm = h("form", { class: "toolbar", role: "search" },
    h("label", { for: searchId }, "Numbers starting with"), search, h("button", { type: "submit" }, "Search"),
    h("span", { class: "hint", id: `${searchId}-hint` }, "E.164 digits, e.g. +1212; empty: every number."));

  const numbersId = uid("dnc-numbers");
  const reasonId = uid("dnc-reason");
  const numbers = h("textarea", { id: numbersId, name: "numbers", rows: 4, cols: 40, required: true,
    "aria-describedby": `${numbersId}-hint` });
  const reason = h("input", { id: reasonId, name: "reason", type: "text", size: 40, maxlength: 500 });
  const addForm = h("form", {},
    h("div", { class: "field" }, h("label", { for: numbersId }, "Numbers"), numbers,
      h("span", { class: "hint", id: `${numbersId}-hint` }, "One per line (or separated by commas), in any usual format.")),
    h("div", { class: "field" }, h("label", { for: reasonId }, "Reason (optional)"), reason),
    h("button", { type: "submit" }, "Add to the list"));

  const fileId = uid("dnc-file");
  const file = h("input", { id: fileId, type: "file", accept: ".csv,.txt,text/csv,text/plain", required: true,
    "aria-describedby": `${fileId}-hint` });
  const progress = h("progress", { max: 1, value: 0, hidden: true, "aria-label": "Import progress" });
  const importForm = h("form", {},
    h("div", { class: "field" }, h("label", { for: fileId }, "File"), file,
      h("span", { class: "hint", id: `${fileId}-hint` },
        "A CSV whose header names the phone column (phone, phone_number or phoneNumber), or one number per line.")),
    progress, h("button", { type: "submit" }, "Import"));

  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Do not call")),
    h("p", { class: "hint" }, "No call to a listed number is enqueued or placed: calls already waiting end ",
      "“skipped (suppressed)” with the listing named in their history."),
    said, problem,
    h("section", { class: "card", "aria-labelledby": "dnc-list-heading" },
      h("h2", { id: "dnc-list-heading" }, "Listed numbers"), searchForm, summary,
      h("div", { class: "table-wrap" }, h("table", { class: "dnc" },
        h("caption", { class: "visually-hidden" }, "The workspace's do-not-call list"),
        h("thead", {}, h("tr", {}, ["Number", "Source", "Reason", "Listed", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        tbody)),
      more),
    h("section", { class: "card", "aria-labelledby": "dnc-add-heading" }, h("h2", { id: "dnc-add-heading" }, "Add numbers"), addForm),
    h("section", { class: "card", "aria-labelledby": "dnc-import-heading" }, h("h2", { id: "dnc-import-heading" }, "Import a file"), importForm));

  function tell(text) {
    said.textContent = text;
    problem.textContent = "";
    announce(text);
  }

  function fail(err) {
    said.textContent = "";
    problem.textContent = err.message;
  }

  function row(e) {
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Remove ${e.number}` }, "Remove…");
    remove.addEventListener("click", async () => {
      const ok = await ask(`Remove ${e.number} from the list?`, h("p", {},
        `Calls to ${e.number} can be enqueued and placed again.`), "Remove");
      if (!ok) return;
      try {
        await api.call("DELETE", `/api/dnc/${encodeURIComponent(e.number)}`);
        tell(`${e.number} is removed from the do-not-call list.`);
        load(true);
      } catch (err) {
        fail(err);
      }
    });
    return h("tr", { "data-number": e.number },
      h("th", { scope: "row" }, e.number),
      h("td", {}, e.source, e.callId ? h("div", { class: "hint" }, `call ${e.callId}`) : null),
      h("td", {}, e.reason || "—"),
      h("td", {}, time(e.listedAt)),
      h("td", {}, remove));
  }

  let cursor = null;
  let asked = 0;  // reads asked for; only the latest one's answer is shown (a search typed while "More" is read)
  async function load(fresh) {
    if (fresh) cursor = null;
    asked += 1;
    const mine = asked;
    try {
      const doc = await api.get("/api/dnc", { limit: PAGE, cursor, prefix: search.value.trim() });
      if (mine !== asked) return;
      const { entries, total, nextCursor } = doc.data;
      if (fresh) clear(tbody);
      tbody.append(...entries.map(row));
      if (fresh && !entries.length) {
        tbody.append(h("tr", {}, h("td", { colspan: 5, class: "empty" },
          search.value.trim() ? "No listed number starts with these digits." : "No number is listed.")));
      }
      cursor = nextCursor;
      more.hidden = !nextCursor;
      summary.textContent = `${num(total)} numbers listed in all.`;
    } catch (err) {
      if (mine === asked) fail(err);
    }
  }

  function report(counts) {
    let text = `${num(counts.added)} added, ${num(counts.alreadyListed)} already listed`;
    if (counts.invalid) {
      const named = counts.invalidEntries.slice(0, 5).map((e) => `${e.phoneNumber ?? "(not text)"} (${e.reason})`);
      text += `; ${num(counts.invalid)} not a number: ${named.join(", ")}${counts.invalid > 5 ? ", …" : ""}`;
    }
    return `${text}.`;
  }

  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    load(true);
  });
  more.addEventListener("click", busyWhile(() => load(false)));  // a double click read one page twice

  onSubmit(addForm, async () => {
    const list = numbers.value.split(/[\n,]/).map((n) => n.trim()).filter(Boolean);
    try {
      const doc = await api.post("/api/dnc", { numbers: list, source: "manual",
        ...(reason.value.trim() ? { reason: reason.value.trim() } : {}) });
      tell(report(doc.data));
      addForm.reset();
      load(true);
    } catch (err) {
      fail(err);
    }
  });

  onSubmit(importForm, async () => {
    const chosen = file.files[0];
    if (!chosen) return;
    let all;
    try {
      all = numbersOf(await chosen.text());
    } catch (err) {
      fail(new Error(`${chosen.name} cannot be imported: ${err.message}. Nothing was listed.`));
      return;
    }
    const totals = { added: 0, alreadyListed: 0, invalid: 0, invalidEntries: [] };
    progress.hidden = false;
    progress.max = Math.max(1, all.length);
    progress.value = 0;
    try {
      for (let start = 0; start < all.length; start += CHUNK) {
        // The same file again sends the same keys: the server answers the chunks it already has. The name goes
        // in as a digest (a name beyond ASCII, "Müller.csv", was refused as a key, or made fetch throw).
        const key = `console-dnc:${digest(chosen.name)}:${chosen.size}:${chosen.lastModified}:${start}`;
        const doc = await api.post("/api/dnc", { numbers: all.slice(start, start + CHUNK), source: "import" },
          { headers: { "Idempotency-Key": key } });
        for (const name of ["added", "alreadyListed", "invalid"]) totals[name] += doc.data[name];
        totals.invalidEntries.push(...doc.data.invalidEntries);
        progress.value = Math.min(all.length, start + CHUNK);
      }
      tell(`${chosen.name}: ${report(totals)}`);
      importForm.reset();
      load(true);
    } catch (err) {
      fail(err);
    } finally {
      progress.hidden = true;
    }
  });

  load(true);
  return () => {};
}
