"""`dialer import-csv` and `dialer batches ...` against a running server (the test server here)."""

from __future__ import annotations

import argparse
import asyncio
import io

import aiohttp
import pytest
from rich.console import Console

from dialer import remote
from dialer.importer import ImportFailed, import_rows, read_rows
from tests.conftest import make_api


def csv_bytes(rows: int, bad: set[int] = frozenset(), sep: str = ";", bom: bool = True) -> bytes:
    lines = [sep.join(["Phone", "first_name", "account_id"])]
    for i in range(rows):
        phone = "12" if i in bad else f"+1212{2000000 + i:07d}"
        lines.append(sep.join([phone, f"Zoë {i}", f"ACC-{i}"]))
    text = "\n".join(lines) + "\n"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def url_of(api) -> str:
    return str(api.client.make_url("")).rstrip("/")


async def test_import_with_rejects_then_an_interrupted_import_resumes_without_duplicates(api):
    batch = await api.create_batch()
    data = csv_bytes(2500, bad={3, 1700})
    async with aiohttp.ClientSession() as session:
        result = await import_rows(session, url_of(api), api.key, batch, data, chunk_size=1000)
    assert (result.rows, result.added, result.rejected, result.chunks) == (2500, 2498, 2, 3)
    assert [r["row"] for r in result.rejects] == [5, 1702]  # file lines: header is line 1
    assert all("impossible" in r["reason"] for r in result.rejects)
    calls = await api.all_calls(batch)
    assert len(calls) == 2498 and calls[0]["variables"] == {"first_name": "Zoë 0", "account_id": "ACC-0"}

    other = await api.create_batch()
    seen = []

    def interrupt_after_two(n: int) -> None:
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt  # the operator pressed Ctrl-C

    async with aiohttp.ClientSession() as session:
        with pytest.raises(KeyboardInterrupt):
            await import_rows(session, url_of(api), api.key, other, data, 1000, interrupt_after_two)
        assert len(await api.all_calls(other)) == 1998  # two chunks, one bad row in each
        again = await import_rows(session, url_of(api), api.key, other, data, chunk_size=1000)
    assert again.replayed == 2 and again.added == 2498 and again.rejected == 2
    assert len(await api.all_calls(other)) == 2498  # nothing twice


@pytest.mark.parametrize("data, reason", [
    (b"name,email\nx,y\n", "phone column"),
    (b"phone,phone_number\n1,2\n", "phone column"),
    (b"phone,name\n+12125550100\n", "line 2 has 1 fields"),
    (b"phone,name\n\xff\xfe,x\n", "not UTF-8"),
    (b"", "empty"),
    (b"phone,name,name\n+12125550100,a,b\n", "column twice"),
])
def test_unreadable_files_are_refused_with_the_reason(data, reason):
    with pytest.raises(ImportFailed, match=reason):
        read_rows(data)


def test_comma_files_without_bom_and_blank_lines():
    header, rows = read_rows(b"phoneNumber,name\n+12125550100,Ann\n\n+12125550101,Bob;Jr\n")
    assert header == ["phoneNumber", "name"] and [(line, r["name"]) for line, r in rows] == [(2, "Ann"), (4, "Bob;Jr")]


def args(api, command: str, **kw) -> argparse.Namespace:
    return argparse.Namespace(command=command, url=url_of(api), key=api.key, **kw)


async def test_the_cli_creates_imports_lists_shows_and_stops(api, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_bytes(csv_bytes(30, bad={7}, sep=",", bom=False))
    out = io.StringIO()
    console = Console(file=out, width=200)
    code = await remote.run(args(api, "import-csv", file=str(path), batch=None, create="From CSV",
                                 calling_number=api.agent["callingNumbers"], agent=None, limit=3, chunk=10,
                                 rejects=None), console)
    assert code == 0 and "30 rows: 29 new calls, 1 rejected" in out.getvalue()
    assert (tmp_path / "contacts.csv.rejected.csv").read_text().splitlines()[1].startswith("9,12,")
    code = await remote.run(args(api, "batches", verb="list", batch_id=None, status=None, hang_up=False), console)
    assert code == 0 and "From CSV" in out.getvalue()
    _, doc = await api.get("/api/call/batches")
    batch = doc["data"]["batches"][0]["batchId"]
    code = await remote.run(args(api, "batches", verb="stop", batch_id=batch, status=None, hang_up=False), console)
    assert code == 0 and "paused" in out.getvalue()
    code = await remote.run(args(api, "batches", verb="cancel", batch_id=batch, status=None, hang_up=True), console)
    assert code == 0
    code = await remote.run(args(api, "batches", verb="start", batch_id=batch, status=None, hang_up=False), console)
    assert code == 1 and "409" in out.getvalue()


async def test_the_cli_needs_a_key_and_names_a_foreign_batch(api, client, app):
    other = await make_api(client, app)
    theirs = await other.create_batch()
    out = io.StringIO()
    console = Console(file=out, width=200)
    no_key = argparse.Namespace(command="batches", url=url_of(api), key="", verb="list", batch_id=None)
    assert await remote.run(no_key, console) == 2 and "no API key" in out.getvalue()
    code = await remote.run(args(api, "batches", verb="show", batch_id=theirs, status=None, hang_up=False), console)
    assert code == 1 and "403" in out.getvalue()


async def test_the_dialer_command_itself(api, tmp_path, capsys):
    """Through `dialer ...`'s own argument parsing (click), in a thread: it runs its own event loop."""
    import asyncio

    from dialer.cli import main as cli_main

    path = tmp_path / "c.csv"
    path.write_bytes(csv_bytes(12, sep=","))
    server = ["--url", url_of(api), "--key", api.key]
    code = await asyncio.to_thread(cli_main, ["import-csv", str(path), "--create", "cli batch", "--calling-number",
                                              api.agent["callingNumbers"][0], "--chunk", "5", *server])
    assert code == 0
    code = await asyncio.to_thread(cli_main, ["batches", "list", *server])
    assert code == 0 and "cli" in capsys.readouterr().out  # (the table wraps to the terminal width)
    assert await asyncio.to_thread(cli_main, ["import-csv", str(path), *server]) == 2  # neither --batch nor --create
    code = await asyncio.to_thread(cli_main, ["batches", "stop", "64e5f12345abcdef98765432", *server])
    assert code == 1


async def test_batch_ids_are_shown_whole_and_checked_before_use(api):
    """Found by an exploratory run: at 80 columns `batches list` cut the ids (they share a long prefix: batches
    looked alike), and an "id" with a path in it reached another route (a traceback)."""
    batch = await api.create_batch(name="a batch with a rather long name to squeeze the table " * 2)
    out = io.StringIO()
    console = Console(file=out, width=80)
    assert await remote.run(args(api, "batches", verb="list", batch_id=None, status=None, hang_up=False), console) == 0
    assert batch in out.getvalue()
    for bad in (f"{batch}/calls", "../../health", f"{batch}?x=1"):
        out.truncate(0)
        code = await remote.run(args(api, "batches", verb="show", batch_id=bad, status=None, hang_up=False), console)
        assert code == 2 and "is not a batch id" in out.getvalue(), out.getvalue()


async def test_the_import_summary_adds_up_and_says_when_running_again_helps(api, tmp_path):
    """Found by an exploratory run: "calls added" counted a number repeated in two chunks twice (19,960 reported,
    19,940 calls); a header-only file "imported" 0 rows with exit 0; a refused batch said to run again."""
    rows = "".join(f"+1212555{i:04d},n{i}\n" for i in range(6)) + "+12125550001,again\n+12125550002,again\n"
    path = tmp_path / "dupes.csv"
    path.write_text("phone,name\n" + rows)
    batch = await api.create_batch()
    out = io.StringIO()
    console = Console(file=out, width=200)
    imp = dict(file=str(path), batch=batch, create=None, calling_number=None, agent=None, limit=None, chunk=3, rejects=None)
    assert await remote.run(args(api, "import-csv", **imp), console) == 0
    assert "8 rows: 6 new calls, 2 waiting calls updated" in out.getvalue()
    assert len(await api.all_calls(batch)) == 6
    empty = tmp_path / "empty.csv"
    empty.write_text("phone,name\n")
    assert await remote.run(args(api, "import-csv", **{**imp, "file": str(empty)}), console) == 2
    assert "header but no rows" in out.getvalue()
    out.truncate(0)
    out.seek(0)
    code = await remote.run(args(api, "import-csv", **{**imp, "batch": "64e5f12345abcdef98765432"}), console)
    assert code == 1 and "404" in out.getvalue() and "run the same command again" not in out.getvalue()


async def test_an_enrollment_batchs_uuid_is_shown_whole_in_a_narrow_terminal(api):
    """Found by an exploratory run: `batches list` cut the ids; an enrollment batch's id is a 36-character UUID,
    longer than the room the table kept for the id column, so it was still cut in a narrow terminal."""
    from tests.enrollment_client import contact, enroll

    code, answer, _, _ = await enroll(api, {"contacts": [contact("+12125550100")]})
    assert code == 202, answer
    for width in (40, 80):
        out = io.StringIO()
        console = Console(file=out, width=width)
        assert await remote.run(args(api, "batches", verb="list", batch_id=None, status=None, hang_up=False),
                                console) == 0
        assert answer["batchId"] in out.getvalue(), out.getvalue()


async def test_a_workspace_id_with_a_path_in_it_is_refused_before_any_request(api):
    """`workspace-set "../../health"` sent a PATCH to /health (answered "405: Method Not Allowed")."""
    out = io.StringIO()
    for bad in ("../../health", f"{api.workspace_id}/keys", f"{api.workspace_id}?x=1"):
        ns = argparse.Namespace(command="workspace-set", url=url_of(api), key="admin-secret", workspace_id=bad,
                                body={"credits": 5})
        code = await remote.run(ns, Console(file=out, width=200))
        assert code == 2 and "is not a workspace id" in out.getvalue(), out.getvalue()
    resp = await api.client.get(f"/api/admin/workspaces/{api.workspace_id}",
                                headers={"Authorization": "Bearer admin-secret"})
    assert resp.status == 200 and (await resp.json())["data"]["credits"] is None  # nothing was changed


async def test_numbers_on_the_do_not_call_list_are_counted_so_the_summary_adds_up(api, tmp_path):
    """The server answers the numbers it did not enqueue because they are on the do-not-call list (`suppressed`):
    the summary said nothing of them, so its numbers did not add up to the rows."""
    code, doc = await api.post("/api/dnc", {"numbers": ["+12125550001", "+12125550004"], "source": "manual"})
    assert code == 200, doc
    path = tmp_path / "contacts.csv"
    path.write_text("phone,name\n" + "".join(f"+1212555{i:04d},n{i}\n" for i in range(6)))
    batch = await api.create_batch()
    out = io.StringIO()
    imp = dict(file=str(path), batch=batch, create=None, calling_number=None, agent=None, limit=None, chunk=4,
               rejects=None)
    assert await remote.run(args(api, "import-csv", **imp), Console(file=out, width=200)) == 0
    assert "6 rows: 4 new calls, 2 on the do-not-call list, not enqueued, 0 rejected" in out.getvalue(), out.getvalue()
    assert len(await api.all_calls(batch)) == 4


async def test_no_answer_or_a_proxys_error_page_says_run_again_and_a_bad_key_says_what_is_wrong(
        api, aiohttp_server, tmp_path, monkeypatch):
    """A timeout ended in a traceback (TimeoutError is not an aiohttp.ClientError), and a 502 page without JSON
    (a proxy in front of a failed server) did not say that running again resumes; a 403 did not name the key."""
    from aiohttp import web

    mode = {"now": "hang"}

    async def add_calls(request: web.Request) -> web.Response:
        if mode["now"] == "hang":
            await asyncio.sleep(5)
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/api/call/addCallsToBatch", add_calls)
    server = await aiohttp_server(app)
    monkeypatch.setattr(remote, "TIMEOUT_SECONDS", 0.5, raising=False)
    path = tmp_path / "contacts.csv"
    path.write_text("phone\n+12125550100\n")
    imp = dict(command="import-csv", url=str(server.make_url("")).rstrip("/"), key="k", file=str(path),
               batch="64e5f12345abcdef98765432", create=None, calling_number=None, agent=None, limit=None, chunk=10,
               rejects=None)
    for now, said in (("hang", "did not answer within 0.5 s"), ("proxy", "the server answered 502 without JSON")):
        mode["now"] = now
        out = io.StringIO()
        assert await remote.run(argparse.Namespace(**imp), Console(file=out, width=300)) == 1
        assert said in out.getvalue() and "run the same command again to resume" in out.getvalue(), out.getvalue()
    out = io.StringIO()
    batch = await api.create_batch()
    ns = argparse.Namespace(**{**imp, "url": url_of(api), "batch": batch, "key": "dk_not-a-key"})
    assert await remote.run(ns, Console(file=out, width=300)) == 1
    assert "403" in out.getvalue() and "check the key" in out.getvalue(), out.getvalue()
    assert "run the same command again" not in out.getvalue()
    out = io.StringIO()
    ns = argparse.Namespace(**{**imp, "url": url_of(api), "batch": f"{batch}/../x", "key": api.key})
    assert await remote.run(ns, Console(file=out, width=300)) == 2 and "is not a batch id" in out.getvalue()
    out = io.StringIO()
    ns = argparse.Namespace(**{**imp, "url": url_of(api), "batch": batch, "key": api.key, "file": "/nope.csv"})
    assert await remote.run(ns, Console(file=out, width=300)) == 2
    assert "cannot read /nope.csv: No such file or directory" in out.getvalue(), out.getvalue()
