// Contacts from a CSV file: checked by the server first (POST /api/call/batches/{id}/csv?dryRun=true,
// the CLI importer's column mapping and addCallsToBatch's rules), the rejected rows shown with their
// reasons, then imported (the valid rows written, once: the upload carries an Idempotency-Key).

import { ApiError } from "./api.js";
import { clear, h, num, uid } from "./dom.js";
import { randomKey } from "./keys.js";

function rejectedTable(data) {
  if (!data.rejectedCount) return null;
  return h("div", { class: "table-wrap" },
    h("table", { class: "rejected" },
      h("caption", {}, `Rejected rows (${num(data.rejectedCount)})`,
        data.rejectedTruncated ? `, the first ${num(data.rejected.length)} shown` : ""),
      h("thead", {}, h("tr", {}, ["Line", "Phone number", "Reason"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, data.rejected.map((r) => h("tr", {},
        h("td", { class: "num" }, String(r.line)), h("td", {}, r.phoneNumber ?? "—"), h("td", {}, r.reason))))));
}

export function mountUpload(root, { api }, batchId, { onImported = () => {}, level = "h2" } = {}) {
  const id = uid("csv");
  const input = h("input", { type: "file", id: `${id}-file`, accept: ".csv,text/csv", "aria-describedby": `${id}-hint` });
  const status = h("p", { class: "hint", role: "status" });
  const problem = h("p", { class: "error", role: "alert" });
  const preview = h("div", { class: "preview" });
  const importButton = h("button", { type: "button", disabled: true }, "Import");
  let file = null;
  let key = null;

  root.append(h("section", { class: "card", "aria-labelledby": `${id}-heading` },
    h(level, { id: `${id}-heading` }, "Add contacts from a CSV file"),
    h("p", { id: `${id}-hint`, class: "hint" },
      "The first row names the columns: the phone number's column is phone_number, phoneNumber or phone; ",
      "every other column becomes a variable of the call. UTF-8 (with or without BOM), separated by , or ;. ",
      "The file is checked first: nothing is written until you import."),
    h("label", { for: `${id}-file` }, "CSV file"), input,
    status, problem, preview, importButton));

  async function send(dryRun) {
    return api.call("POST", `/api/call/batches/${batchId}/csv`, {
      body: file, query: { dryRun: dryRun ? "true" : "false" },
      headers: { "Content-Type": file.type || "text/csv", ...(dryRun ? {} : { "Idempotency-Key": key }) },
    });
  }

  function show(data, text) {
    clear(preview);
    preview.append(h("p", { class: "summary" }, text), rejectedTable(data));
  }

  let checks = 0;  // files chosen; only the latest one's check is shown
  input.addEventListener("change", async () => {
    checks += 1;
    const mine = checks;
    file = input.files[0] || null;
    key = randomKey();
    clear(preview);
    problem.textContent = "";
    importButton.disabled = true;
    importButton.textContent = "Import";
    if (!file) return;
    status.textContent = `Checking ${file.name}…`;
    try {
      const { data } = await send(true);
      // Another file was chosen meanwhile (found: the first file's slower check then showed its counts on
      // the Import button of the second).
      if (mine !== checks) return;
      const rejected = data.rejectedCount ? `, ${num(data.rejectedCount)} rejected` : ", none rejected";
      show(data, `${num(data.rows)} rows: ${num(data.accepted)} can be imported${rejected}.`);
      status.textContent = `${file.name} checked.`;
      importButton.disabled = data.accepted === 0;
      importButton.textContent = `Import ${num(data.accepted)} rows`;
    } catch (err) {
      if (mine !== checks) return;
      status.textContent = "";
      problem.textContent = err instanceof ApiError && err.code === 400
        ? `This file cannot be imported: ${err.detail}` : `Could not check the file: ${err.message}`;
    }
  });

  importButton.addEventListener("click", async () => {
    if (!file) return;
    importButton.disabled = true;
    // No other file while this one is written (found: a file chosen meanwhile took the import's answer, was
    // called "imported", and could not be imported itself).
    input.disabled = true;
    problem.textContent = "";
    status.textContent = `Importing ${file.name}…`;
    try {
      const doc = await send(false);
      const { data } = doc;
      show(data, doc.code === 207
        ? `${doc.message}: ${num(data.added)} calls written; some chunks failed (${doc.errorMessage}). Import the file again to complete it.`
        : `${doc.message}.`);
      status.textContent = `${file.name} imported.`;
      importButton.textContent = "Imported";
      onImported(data);
    } catch (err) {
      status.textContent = "";
      problem.textContent = `The import failed: ${err.message}`;
      if (err instanceof ApiError && err.data && err.data.rejected) show(err.data, err.title);
      importButton.disabled = err instanceof ApiError && err.code === 400;
    } finally {
      input.disabled = false;
    }
  });
}
