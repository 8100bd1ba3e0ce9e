"""The `dialer` commands that talk to a running server over HTTP (so they work with the embedded store
too): `import-csv` and `dnc import` with a progress bar, `batches list | show | start | stop | cancel | retry`
as tables, and `workspace-set` (a workspace's settings, with the admin token as the key). The server is DIALER_URL (default http://127.0.0.1:8080), the key DIALER_API_KEY (or --url,
--key).
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from dialer.dnc_import import DncFile, DncImportFailed, import_numbers
from dialer.importer import ImportFailed, import_rows, read_rows, write_rejects

# Our batch ids (ObjectIds), or an enrollment batch's UUID: what may follow /api/call/batches/.
BATCH_ID = re.compile(r"[0-9a-fA-F]{24}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
WORKSPACE_ID = re.compile(r"[0-9a-fA-F]{24}")  # an ObjectId, nothing else (dialer/services/tenancy.py parse_id)


def segment(value: str) -> str:
    """`value` as one path segment: a `/`, `?`, `#` or `..` in it cannot reach another route."""
    return quote(value, safe="")

VERBS = ("list", "show", "start", "stop", "cancel", "retry")
TIMEOUT_SECONDS = 600  # one request; a timeout is said as such, not as a traceback
RESUME = " (run the same command again to resume: nothing is written twice)"


async def run(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    if not args.key:
        console.print("[red]no API key: give --key or set DIALER_API_KEY[/red]")
        return 2
    url = args.url.rstrip("/")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as session:
        try:
            if args.command == "import-csv":
                return await _import(session, url, args, console)
            if args.command == "dnc-import":
                return await _dnc_import(session, url, args, console)
            if args.command == "workspace-set":
                return await _workspace_set(session, url, args, console)
            return await _batches(session, url, args, console)
        except (aiohttp.ClientError, TimeoutError) as exc:
            console.print(f"[red]{_unreachable(url, exc)}[/red]")
            return 1


def _unreachable(url: str, exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return f"{url} did not answer within {TIMEOUT_SECONDS} s"
    return f"cannot reach {url}: {exc}"


async def _call(session, method: str, url: str, key: str, body=None) -> tuple[int, dict]:
    async with session.request(method, url, json=body, headers={"x-api-key": key}) as resp:
        try:
            return resp.status, await resp.json(content_type=None)
        except ValueError:
            return resp.status, {"errorMessage": f"HTTP {resp.status}"}


async def _import(session, url: str, args, console: Console) -> int:
    if args.batch and not BATCH_ID.fullmatch(args.batch):
        console.print(f"[red]{args.batch!r} is not a batch id (24 hex characters, or an enrollment's UUID)[/red]")
        return 2
    try:
        data = Path(args.file).read_bytes()
        _, rows = read_rows(data)
    except OSError as exc:
        console.print(f"[red]cannot read {args.file}: {exc.strerror or exc}[/red]")
        return 2
    except ImportFailed as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    if not rows:
        console.print("[red]the file has a header but no rows: nothing to import[/red]")
        return 2
    batch_id = args.batch
    if args.create:
        body = {"name": args.create, **({"agentId": args.agent} if args.agent else {}),
                **({"callingNumbers": args.calling_number} if args.calling_number else {}),
                **({"concurrencyLimit": args.limit} if args.limit else {})}
        code, doc = await _call(session, "POST", f"{url}/api/call/createBatch", args.key, body)
        if code != 200:
            console.print(f"[red]createBatch: {code} {doc.get('errorMessage')}[/red]")
            return 1
        batch_id = doc["data"]["batchId"]
        console.print(f"batch {batch_id} created (run again with --batch {batch_id} to resume)")
    failed: ImportFailed | None = None
    with _bar(console, "rows") as bar:  # the message comes after the bar's last line
        task = bar.add_task("importing", total=len(rows), rate="-")
        try:
            result = await import_rows(session, url, args.key, batch_id, data, args.chunk, _advancer(bar, task))
        except ImportFailed as exc:  # a 4xx: say what is wrong; a 5xx: running again resumes
            failed = exc
        except (aiohttp.ClientError, TimeoutError) as exc:  # unreachable, the connection broke, or no answer
            failed = ImportFailed(_unreachable(url, exc), resumable=True)
    if failed is not None:
        console.print(f"[red]{failed}[/red]{RESUME if failed.resumable else ''}")
        return 1
    rejects = args.rejects or f"{args.file}.rejected.csv"
    if result.rejects:
        write_rejects(rejects, result.rejects)
    parts = [f"{result.new} new calls", *(f"{n} {what}" for n, what in (
        (result.updated, "waiting calls updated (numbers already in the batch)"),
        (result.collapsed, "repeats of a number collapsed"),
        (result.in_call, "numbers in a call left alone"),
        (result.suppressed, "on the do-not-call list, not enqueued")) if n), f"{result.rejected} rejected"]
    console.print(f"{result.rows} rows: {', '.join(parts)}"
                  + (f" (see {rejects})" if result.rejects else "")
                  + (f"; {result.replayed} chunks were already there" if result.replayed else ""))
    return 0


def _bar(console: Console, unit: str) -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]} " + unit + "/s"), TimeRemainingColumn())
    return Progress(*columns, console=console, transient=False)


def _advancer(bar: Progress, task) -> Callable[[int], None]:
    def advance(n: int) -> None:
        bar.advance(task, n)
        elapsed = bar.tasks[task].elapsed or 0
        bar.update(task, rate=f"{bar.tasks[task].completed / elapsed:,.0f}" if elapsed else "-")

    return advance


async def _dnc_import(session, url: str, args, console: Console) -> int:
    try:
        file = DncFile.read(args.file)
    except (OSError, DncImportFailed) as exc:  # the file itself: running again will not help
        console.print(f"[red]{exc}[/red]")
        return 2
    failed: DncImportFailed | None = None
    with _bar(console, "numbers") as bar:  # the message comes after the bar's last line
        task = bar.add_task("listing", total=len(file.numbers), rate="-")
        try:
            result = await import_numbers(session, url, args.key, file, args.reason, args.chunk, _advancer(bar, task))
        except DncImportFailed as exc:  # a 4xx: say what is wrong; a 5xx: running again continues
            failed = exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            failed = DncImportFailed(_unreachable(url, exc), resumable=True)
    if failed is not None:
        hint = " (run the same command again to resume where it stopped)" if failed.resumable else ""
        console.print(f"[red]{failed}[/red]{hint}")
        return 1
    rejects = args.rejects or f"{args.file}.rejected.csv"
    if result.invalid:
        with open(rejects, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["line", "phoneNumber", "reason"])
            writer.writeheader()
            writer.writerows(result.invalid)
    console.print(f"{result.numbers} numbers: {result.added} listed, {result.already} already listed, "
                  f"{result.repeated} repeated in the file, {len(result.invalid)} invalid"
                  + (f" (see {rejects})" if result.invalid else "")
                  + (f"; {result.skipped_chunks} chunks done by an earlier run" if result.skipped_chunks else ""))
    return 0


async def _batches(session, url: str, args, console: Console) -> int:
    if args.verb == "list":
        query = "?limit=100" + (f"&status={args.status}" if args.status else "")
        code, doc = await _call(session, "GET", f"{url}/api/call/batches{query}", args.key)
        if code != 200:
            console.print(f"[red]{code}: {doc.get('errorMessage')}[/red]")
            return 1
        # A batch id is copied whole to the next command: never cut (the ids share a long prefix). The column is
        # as wide as the longest id shown (an enrollment batch's is a 36-character UUID); the others give way.
        batches = doc["data"]["batches"]
        table = Table(Column("batch", no_wrap=True, overflow="fold",
                             min_width=max((len(b["batchId"]) for b in batches), default=24)),
                      "name", "status", "limit", "in flight", "waiting", "finished", "outcomes")
        for b in batches:
            c = b["counters"]
            table.add_row(b["batchId"], b["name"], b["status"], str(b["concurrencyLimit"]), str(c["inFlight"]),
                          str(c["waiting"]), str(c["finished"]),
                          ", ".join(f"{k} {v}" for k, v in sorted(c["byOutcome"].items())))
        console.print(table)
        return 0
    if not args.batch_id:
        console.print(f"[red]batches {args.verb} needs a batch id[/red]")
        return 2
    if not BATCH_ID.fullmatch(args.batch_id):  # a path or a query in it would reach another route
        console.print(f"[red]{args.batch_id!r} is not a batch id (24 hex characters, or an enrollment's UUID)[/red]")
        return 2
    target = f"{url}/api/call/batches/{segment(args.batch_id)}"
    if args.verb == "show":
        code, doc = await _call(session, "GET", target, args.key)
    else:
        body = {"hangUp": True} if args.verb == "cancel" and args.hang_up else None
        code, doc = await _call(session, "POST", f"{target}/{args.verb}", args.key, body)
    if code != 200:
        console.print(f"[red]{code}: {doc.get('errorMessage')}[/red]")
        return 1
    b = doc["data"]
    table = Table("field", "value", title=f"batch {b['batchId']}")
    for name in ("name", "status", "concurrencyLimit", "retryCount", "createdAt", "scheduledAt"):
        table.add_row(name, str(b.get(name)))
    for name, value in b["counters"].items():
        table.add_row(name, str(value))
    console.print(table)
    return 0



async def _workspace_set(session, url: str, args, console: Console) -> int:
    if not WORKSPACE_ID.fullmatch(args.workspace_id):  # "../../health" would PATCH another route
        console.print(f"[red]{args.workspace_id!r} is not a workspace id (24 hex characters: "
                      "`dialer workspace-list` shows them)[/red]")
        return 2
    code, doc = await _call(session, "PATCH", f"{url}/api/admin/workspaces/{segment(args.workspace_id)}", args.key,
                            args.body)
    if code != 200:
        console.print(f"[red]{code}: {doc.get('errorMessage')}[/red]")
        return 1
    table = Table("setting", "value", title=f"workspace {doc['data']['workspaceId']}")
    for name, value in doc["data"].items():
        table.add_row(name, "unlimited" if name == "credits" and value is None else str(value))
    console.print(table)
    return 0
