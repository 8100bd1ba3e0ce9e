"""Reading a CSV file of contacts into call records: the one column mapping of the CLI importer and the
console's upload (pure, no I/O).

The header names the columns: the phone number's column is `phone_number`, `phoneNumber` or `phone`
(any case), renamed `phoneNumber`; every other column is a variable of the call. UTF-8 with or without
a BOM, `,` or `;` between fields (whichever the header line uses more). Blank lines are skipped; a row
whose field count differs from the header's, a header naming a column twice, or none or two phone
columns make the file unreadable (CsvUnreadable, with the reason).
"""

from __future__ import annotations

import csv
import io

PHONE_COLUMNS = ("phone_number", "phonenumber", "phone")


class CsvUnreadable(ValueError):
    """The file cannot be read as contacts; the message says why (and where)."""


def read_contacts(data: bytes) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, rows as (line number, {column: value})) with the phone column renamed phoneNumber."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvUnreadable(f"the file is not UTF-8 (byte {exc.start})") from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    # strict: an unterminated quote is an error, not a field that swallows the rest of the file.
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise CsvUnreadable("the file is empty") from None
    except csv.Error as exc:
        raise CsvUnreadable(f"line 1 is not CSV: {exc}") from None
    phone = [i for i, h in enumerate(header) if h.lower() in PHONE_COLUMNS]
    if len(phone) != 1:
        raise CsvUnreadable(f"the header needs exactly one phone column ({', '.join(PHONE_COLUMNS)}); it has {header}")
    names = ["phoneNumber" if i == phone[0] else h for i, h in enumerate(header)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CsvUnreadable(f"the header names a column twice: {twice}")
    rows = []
    try:
        ended = reader.line_num  # lines read so far (the header's)
        for values in reader:
            line, ended = ended + 1, reader.line_num  # the file's line where the row starts (quoted fields may span lines)
            if not any(v.strip() for v in values):
                continue  # blank line
            if len(values) != len(names):
                raise CsvUnreadable(f"line {line} has {len(values)} fields; the header has {len(names)}")
            rows.append((line, dict(zip(names, values))))
    except csv.Error as exc:
        raise CsvUnreadable(f"line {reader.line_num} is not CSV: {exc}") from None
    return names, rows
