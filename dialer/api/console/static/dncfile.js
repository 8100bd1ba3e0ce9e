// The numbers of a do-not-call file, read in the browser by the rules `dialer dnc import` reads it with
// (dialer/dnc_import.py, dialer/core/contacts_csv.py): a CSV whose header names one phone column (phone_number,
// phoneNumber or phone; separated by , or ;, the one the header uses most), or one number per line (blank lines
// and lines starting with # skipped). A file that cannot be read so is refused whole, with the reason.
//
// Found by an exploratory run: the page split each line at every comma, so a quoted field holding one
// ("Doe, John") moved the row's phone onto another column: the number was reported "not a number" and was not
// listed (a person who asked not to be called); a header without a phone column sent every line, header included.

export const PHONE_COLUMNS = ["phone_number", "phonenumber", "phone"];

export class FileUnreadable extends Error {}

// RFC 4180 records as [the file's line where the record starts, its fields]; a quoted field may hold the
// separator, a doubled quote and line breaks. A quote left open is refused (it would swallow the rows after it).
export function records(text, sep) {
  const out = [];
  let fields = [];
  let field = "";
  let quoted = false;
  let line = 1;
  let start = 1;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (c === '"') {
        quoted = false;
      } else {
        if (c === "\n") line += 1;
        field += c;
      }
    } else if (c === '"' && field === "") {
      quoted = true;
    } else if (c === sep) {
      fields.push(field);
      field = "";
    } else if (c === "\n" || (c === "\r" && text[i + 1] === "\n")) {
      if (c === "\r") i += 1;
      fields.push(field);
      out.push([start, fields]);
      fields = [];
      field = "";
      line += 1;
      start = line;
    } else {
      field += c;
    }
  }
  if (quoted) throw new FileUnreadable(`line ${start}: a quote is left open`);
  if (field !== "" || fields.length) out.push([start, [...fields, field]]);
  return out;
}

export function numbersOf(text) {
  const body = text.replace(/^\uFEFF/, "");
  const first = body.split("\n", 1)[0].trim();
  if (!(first.includes(",") || first.includes(";") || PHONE_COLUMNS.includes(first.replace(/^"|"$/g, "").toLowerCase()))) {
    return body.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  }
  const count = (ch) => first.split(ch).length - 1;
  const [head, ...rows] = records(body, count(";") > count(",") ? ";" : ",");
  const header = head[1].map((name) => name.trim());
  const phone = header.flatMap((name, i) => (PHONE_COLUMNS.includes(name.toLowerCase()) ? [i] : []));
  if (phone.length !== 1) {
    throw new FileUnreadable(`the header needs exactly one phone column (${PHONE_COLUMNS.join(", ")}); ` +
      `it has ${header.join(", ")}`);
  }
  const numbers = [];
  for (const [line, values] of rows) {
    if (!values.some((v) => v.trim())) continue;  // a blank line
    if (values.length !== header.length) {
      throw new FileUnreadable(`line ${line} has ${values.length} fields; the header has ${header.length}`);
    }
    numbers.push(values[phone[0]].trim());
  }
  return numbers;
}
