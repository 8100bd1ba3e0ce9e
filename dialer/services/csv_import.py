"""Contacts from a CSV file into a batch (the console's upload, `POST /api/call/batches/{id}/csv`).

The file is read with the CLI importer's column mapping (dialer/core/contacts_csv.py: one
implementation of the rules) and every row is checked by addCallsToBatch's own rules (the ingestion
planner: numbers, required variables, zones, windows, sizes). Unlike addCallsToBatch, which is all or
nothing, an upload writes the valid rows and reports the rejected ones with their file line and reason,
as `dialer import-csv` does. A dry run checks without writing: the console's preview.

What the answer says adds up exactly: `rows == accepted + rejectedCount`, and once written
`added == inserted + updated` (duplicates inside the file collapse into one call, the last row winning);
rows whose number is on the do-not-call list are named in `suppressed` (not enqueued).
"""

from __future__ import annotations

from typing import Any

from dialer.core.contacts_csv import CsvUnreadable, read_contacts
from dialer.core.records import MAX_ECHO, MAX_RECORD_BYTES, Plan
from dialer.services.errors import Refused
from dialer.services.idempotency import Claim
from dialer.services.ingestion import Ingestion, Outcome, free_in_steps, offload

MAX_LISTED = 1000  # rejected rows (and numbers in flight) listed in an answer; the counts are always whole


async def import_csv(ingestion: Ingestion, batch: dict, data: bytes, dry_run: bool,
                     claim: Claim | None = None) -> Outcome:
    """Check (dry run) or write the file's rows into the batch. `claim`: the upload's Idempotency-Key
    claim (a retry after this process died writes each row's call once, as addCallsToBatch does)."""
    try:
        _, rows = await offload(len(data) // 64, read_contacts, data)
    except CsvUnreadable as exc:
        raise Refused(400, "Bad Request", str(exc)) from None
    if not rows:
        raise Refused(400, "Bad Request", "the file has a header but no rows")
    most = ingestion.settings.max_records_per_request
    if len(rows) > most:
        raise Refused(400, "Bad Request", f"the file has {len(rows)} rows; at most {most} per upload: split it")
    agent = await ingestion.tenancy.get_agent(batch["workspaceId"], batch["agentId"])
    if agent is None:
        raise Refused(404, "Not Found", "the batch's agent is gone")
    records = [record for _, record in rows]
    plan = await ingestion.plan_records(batch, agent, records, check_sizes=len(data) > MAX_RECORD_BYTES)
    summary = _summary(rows, plan, dry_run)
    try:
        if dry_run:
            return Outcome(200, f"{summary['accepted']} of {len(rows)} rows can be imported; nothing was written",
                           {**summary, "added": 0})
        ingestion.metrics.records.labels("rejected").inc(len(plan.errors))
        if not plan.calls:
            raise Refused(400, "Bad Request", f"all {len(rows)} rows are invalid; nothing was written", data=summary)
        ingestion.name_calls(plan, claim)
        written = await ingestion.write_plan(batch, plan)
        ingestion.metrics.records.labels("accepted").inc(summary["accepted"])
        return Outcome(written.code, _message(written, summary), {**summary, **_written_view(written.data, rows)},
                       written.error)
    finally:
        await offload(len(records), free_in_steps, [records, plan.calls, rows])


def _summary(rows: list[tuple[int, dict]], plan: Plan, dry_run: bool) -> dict[str, Any]:
    rejected = []
    for error in plan.errors[:MAX_LISTED]:
        line, record = rows[error.index]
        phone = record.get("phoneNumber")
        rejected.append({"line": line, "phoneNumber": phone[:MAX_ECHO] if isinstance(phone, str) else None,
                         "reason": error.reason})
    return {
        "dryRun": dry_run,
        "rows": len(rows),
        "accepted": len(rows) - len(plan.errors),
        "rejectedCount": len(plan.errors),
        "rejected": rejected,
        "rejectedTruncated": len(plan.errors) > MAX_LISTED,
        "duplicatesCollapsed": plan.collapsed,
    }


def _written_view(data: dict, rows: list[tuple[int, dict]]) -> dict[str, Any]:
    """addCallsToBatch's answer without the call ids (an upload of 100,000 rows needs none of them); rows on
    the do-not-call list named by their file line."""
    view = {k: data[k] for k in ("added", "inserted", "updated", "batchStatus")}
    view["inFlightCount"] = len(data["inFlight"])
    view["inFlight"] = data["inFlight"][:MAX_LISTED]
    view["suppressedCount"] = len(data["suppressed"])
    view["suppressed"] = [{"line": rows[s["index"]][0], "phoneNumber": s["phoneNumber"], "reason": s["reason"]}
                          for s in data["suppressed"][:MAX_LISTED]]
    if "failedChunks" in data:
        view["failedChunks"] = data["failedChunks"]
    return view


def _message(written: Outcome, summary: dict) -> str:
    if written.code != 200:
        return written.message
    message = f"{written.data['added']} calls enqueued from {summary['rows']} rows"
    if summary["rejectedCount"]:
        message += f"; {summary['rejectedCount']} rows rejected"
    if written.data["inFlight"]:
        message += f"; {len(written.data['inFlight'])} numbers already in a call were not re-enqueued"
    if written.data["suppressed"]:
        message += f"; {len(written.data['suppressed'])} numbers on the do-not-call list were not enqueued"
    return message
