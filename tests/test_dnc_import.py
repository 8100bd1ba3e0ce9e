"""`dialer dnc import FILE` against the test server: a CSV or a plain list, in chunks with progress,
impossible numbers named by line, and an interrupted import continued without listing anything twice."""

from __future__ import annotations

import argparse
import asyncio
import io

import aiohttp
import pytest
from rich.console import Console

from dialer import remote
from dialer.dnc_import import DncFile, DncImportFailed, import_numbers


def url_of(api) -> str:
    return str(api.client.make_url("")).rstrip("/")


def plain_list(n: int, bad: set[int] = frozenset()) -> str:
    lines = ["# our do-not-call list", ""]
    lines += ["12" if i in bad else f"+1212{2000000 + i:07d}" for i in range(n)]
    return "\n".join(lines) + "\n"


async def total(api) -> int:
    _, doc = await api.get("/api/dnc?limit=1")
    return doc["data"]["total"]


async def test_an_interrupted_import_continues_where_it_stopped(api, tmp_path):
    path = tmp_path / "dnc.txt"
    path.write_text(plain_list(2500, bad={4, 2100}))
    file = DncFile.read(str(path))
    seen: list[int] = []

    def interrupt_after_two(n: int) -> None:
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt  # the operator pressed Ctrl-C

    async with aiohttp.ClientSession() as session:
        with pytest.raises(KeyboardInterrupt):
            await import_numbers(session, url_of(api), api.key, file, chunk=1000, progress=interrupt_after_two)
        assert await total(api) == 1999
        seen.clear()
        rest = await import_numbers(session, url_of(api), api.key, file, chunk=1000, progress=seen.append)
    assert (rest.skipped_chunks, rest.chunks, rest.added, rest.already) == (2, 1, 499, 0)
    assert seen == [2000, 500]  # the bar starts where the last run stopped
    assert [(e["line"], e["phoneNumber"]) for e in rest.invalid] == [(2103, "12")]
    assert await total(api) == 2498
    assert not (tmp_path / "dnc.txt.dnc-progress").exists()  # done: nothing left to resume


async def test_a_crash_after_the_servers_answer_is_answered_again_not_listed_twice(api, tmp_path):
    path = tmp_path / "dnc.txt"
    path.write_text(plain_list(300))
    file = DncFile.read(str(path))
    async with aiohttp.ClientSession() as session:
        first = await import_numbers(session, url_of(api), api.key, file, chunk=100)
        # As if the process died after the last answer, before its note: the whole file again.
        again = await import_numbers(session, url_of(api), api.key, file, chunk=100)
    assert (first.added, again.added, again.replayed) == (300, 300, 3)  # the first answers, replayed
    assert await total(api) == 300


async def test_the_cli_reads_a_csv_and_writes_the_rejects(api, tmp_path):
    path = tmp_path / "dnc.csv"
    path.write_text("name,Phone\nAnn,+12125550100\nBob,not a number\nCy,(212) 555-0100\nDi,212 555 0101\n")
    out = io.StringIO()
    args = argparse.Namespace(command="dnc-import", url=url_of(api), key=api.key, file=str(path), reason="letter",
                              chunk=2, rejects=None)
    assert await remote.run(args, Console(file=out, width=200)) == 0
    assert "4 numbers: 2 listed, 1 already listed, 0 repeated in the file, 1 invalid" in out.getvalue()  # (chunks of 2)
    assert (tmp_path / "dnc.csv.rejected.csv").read_text().splitlines()[1].startswith("3,not a number,")
    _, doc = await api.get("/api/dnc/%2B12125550100")
    assert (doc["data"]["source"], doc["data"]["reason"]) == ("import", "letter")


async def test_the_dialer_command_itself(api, tmp_path, capsys):
    from dialer.cli import main as cli_main

    path = tmp_path / "dnc.txt"
    path.write_text(plain_list(10))
    server = ["--url", url_of(api), "--key", api.key]
    assert await asyncio.to_thread(cli_main, ["dnc", "import", str(path), "--chunk", "4", *server]) == 0
    assert await total(api) == 10
    # A file that is not there is the input's fault, as for import-csv (2), and running again will not help.
    assert await asyncio.to_thread(cli_main, ["dnc", "import", str(tmp_path / "missing.txt"), *server]) == 2
    assert "run the same command again" not in capsys.readouterr().out


def test_an_unreadable_file_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"name,email\nx,y\n")
    with pytest.raises(DncImportFailed, match="phone column"):
        DncFile.read(str(path))


async def test_a_refused_key_says_what_is_wrong_not_to_run_again(api, tmp_path):
    """Found by an exploratory run: after a 403 (a bad key) `dnc import` said "run the same command again to resume",
    which cannot help; it names the key instead."""
    path = tmp_path / "dnc.txt"
    path.write_text(plain_list(3))
    out = io.StringIO()
    ns = argparse.Namespace(command="dnc-import", url=url_of(api), key="dk_not-a-key", file=str(path), reason=None,
                            chunk=10, rejects=None)
    assert await remote.run(ns, Console(file=out, width=300)) == 1
    assert "403" in out.getvalue() and "check the key" in out.getvalue(), out.getvalue()
    assert "run the same command again" not in out.getvalue()
    assert await total(api) == 0
