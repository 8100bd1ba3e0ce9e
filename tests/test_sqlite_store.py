"""The embedded SQLite store as operators meet it: a restart keeps everything, the file's schema is
versioned and migrated, bad files and full disks get clear answers, processes share the file, and a
live database can be backed up. Through the HTTP API and the CLI; real processes are killed in
tests/test_crash.py."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dialer.cli import main as cli_main
from dialer.composition import build_app
from dialer.core.clock import FixedClock
from dialer.ports import StoreOpenFailed
from dialer.settings import Settings
from dialer.store.sqlite import open_sqlite
from dialer.store.sqlite.schema import SCHEMA_VERSION
from tests.conftest import T0
from tests.crash_harness import free_port

KEY = "sqlite-test-key-0123456789"
V1_FILE = Path(__file__).parent / "data" / "dialer-v1.db"  # written through the API by schema version 1


def settings_in(folder: Path, **more) -> Settings:
    return Settings.load(env={}, **{"data_dir": str(folder), "demo_api_key": KEY, "admin_token": "admin-secret",
                                    "embedded_dispatcher": "false",
                                    "warm_body_parser": False, **more})


class Running:
    """The API app on a data folder, as `dialer serve` builds it, for one `async with`."""

    def __init__(self, folder: Path, clock: FixedClock | None = None, **more) -> None:
        self.client = TestClient(TestServer(build_app(settings_in(folder, **more), clock or FixedClock(T0))))

    async def __aenter__(self) -> "Running":
        await self.client.start_server()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.close()

    async def call(self, method: str, path: str, body=None, **headers) -> tuple[int, dict]:
        resp = await self.client.request(method, path, json=body, headers={"x-api-key": KEY, **headers})
        return resp.status, await resp.json()

    async def agent(self) -> str:
        return (await self.call("GET", "/api/agents"))[1]["data"]["agents"][0]["agentId"]


def records(n: int, prefix: str = "+1212555") -> list[dict]:
    return [{"phoneNumber": f"{prefix}{i:04d}", "name": f"Zoë {i}"} for i in range(n)]


async def test_a_restart_finds_every_workspace_batch_call_and_key(tmp_path):
    async with Running(tmp_path) as app:
        code, created = await app.call("POST", "/api/call/createBatch", {"name": "kept", "agentId": await app.agent()})
        batch_id = created["data"]["batchId"]
        code, added = await app.call("POST", "/api/call/addCallsToBatch", {"batchId": batch_id, "call_data": records(40)},
                                     **{"Idempotency-Key": "restart-1"})
        assert code == 200 and added["data"]["added"] == 40
        await app.call("POST", f"/api/call/batches/{batch_id}/stop")
        before = (await app.call("GET", f"/api/call/batches/{batch_id}"))[1]["data"]
    async with Running(tmp_path) as app:  # a new process on the same file
        code, after = await app.call("GET", f"/api/call/batches/{batch_id}")
        assert code == 200
        assert after["data"]["status"] == "paused" and after["data"]["counters"] == before["counters"]
        code, calls = await app.call("GET", f"/api/call/batches/{batch_id}/calls?limit=100")
        assert sorted(c["phoneNumber"] for c in calls["data"]["calls"]) == [r["phoneNumber"] for r in records(40)]
        assert calls["data"]["calls"][0]["variables"]["name"].startswith("Zoë")
        # The retry of the same request after the restart replays its answer and writes nothing again.
        code, again = await app.call("POST", "/api/call/addCallsToBatch", {"batchId": batch_id, "call_data": records(40)},
                                     **{"Idempotency-Key": "restart-1"})
        assert code == 200 and again == added
        assert (await app.call("GET", f"/api/call/batches/{batch_id}"))[1]["data"]["counters"] == before["counters"]


async def test_an_enrollment_accepted_before_a_crash_is_scheduled_at_the_next_start(tmp_path, monkeypatch):
    from dialer.services.enrollment import Enrollment

    async with Running(tmp_path) as app:
        agent = await app.agent()
        # The process dies after the 202 and before its background write: nothing more is written.
        monkeypatch.setattr(Enrollment, "_background", lambda self, intake_id: None)
        body = {"groupByField": "account", "contacts": [
            {"phoneNumber": f"+1415777{i:04d}", "account": f"A{i % 3}"} for i in range(9)]}
        resp = await app.client.post(f"/api/v1/agents/{agent}/schedule/sequences", json=body, headers={"x-api-key": KEY})
        assert resp.status == 202
        batch_id = (await resp.json())["batchId"]
        monkeypatch.undo()
    async with Running(tmp_path) as app:  # start-up resumes the pending intake
        code, calls = await app.call("GET", f"/api/call/batches/{batch_id}/calls?limit=100")
        assert code == 200
        statuses = sorted(c["status"] for c in calls["data"]["calls"])
        assert statuses == ["held"] * 6 + ["queued"] * 3  # one call per group queued, the rest wait their turn


async def test_a_file_written_by_the_first_schema_is_migrated_at_start_up(tmp_path):
    shutil.copy(V1_FILE, tmp_path / "dialer.db")
    async with Running(tmp_path, demo_api_key="demo-key-v1") as app:
        code, listed = await app.call("GET", "/api/call/batches", **{"x-api-key": "demo-key-v1"})
        assert code == 200
        batches = {b["name"]: b for b in listed["data"]["batches"]}
        assert batches["v1 batch"]["counters"]["scheduled"] == 25
        enrolled = next(b for name, b in batches.items() if name.startswith("Enrollment"))
        assert enrolled["counters"]["scheduled"] == 6
        code, calls = await app.call("GET", f"/api/call/batches/{batches['v1 batch']['batchId']}/calls?limit=100",
                                     **{"x-api-key": "demo-key-v1"})
        # (its records carried a custom variable named "variables")
        assert {c["variables"]["variables"]["name"] for c in calls["data"]["calls"]} >= {"Zoë 0", "Zoë 24"}
    conn = sqlite3.connect(tmp_path / "dialer.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [v for v, in conn.execute("SELECT version FROM schema_migrations ORDER BY version")] == \
            list(range(1, SCHEMA_VERSION + 1))
        # Version 3: a status change of a migrated batch writes its partner webhook event in the same statement.
        conn.execute("UPDATE batches SET status = 'cancelled' WHERE status != 'cancelled'")
        changed = conn.execute("SELECT changes()").fetchone()[0]
        assert changed and conn.execute("SELECT count(*) FROM outbox WHERE kind = 'batch'").fetchone()[0] == changed
    finally:
        conn.close()


async def test_slots_reserved_in_a_file_of_schema_6_stay_reserved_after_the_upgrade(tmp_path):
    """Schema 7 moved the slots into the calls; the slot entries an older file holds (a dispatcher may have
    reserved them just before the upgrade, its claims not landed) become reservations, not free slots."""
    import datetime as dt

    from bson import ObjectId

    from dialer.store.sqlite.documents import encode
    from dialer.store.sqlite.schema import migrate
    from workers.slots import Slots

    path = str(tmp_path / "dialer.db")
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, path, target=6)
    batch, calls = ObjectId(), [ObjectId(), ObjectId()]
    at = dt.datetime(2026, 12, 6, 1, 0, tzinfo=dt.timezone.utc)
    entries = [{"callId": c, "token": "before", "at": at} for c in calls]
    conn.execute("INSERT INTO ledger (id, version, doc) VALUES ('account', 4, ?)",
                 (encode({"slots": {str(batch): entries}, "all": entries, "nextDialAt": at}),))
    conn.close()
    repos = await open_sqlite(path)
    try:
        slots = Slots(repos.ledger, grace_seconds=120)
        state = await slots.state(at + dt.timedelta(seconds=30))  # within the grace: still reserved
        assert (state.used(batch), state.total, state.version, state.next_dial_at) == (2, 2, 4, at)
        assert (await slots.state(at + dt.timedelta(seconds=121))).total == 0  # never claimed: freed after it
    finally:
        await repos.close()


def _serve(folder: Path, capsys) -> tuple[int, str]:
    import os

    os.environ["DIALER_DATA_DIR"] = str(folder)
    os.environ["DIALER_PORT"] = str(free_port())  # not 8080: another server of the machine may hold it
    try:
        code = cli_main(["--config", "/dev/null", "serve"])
    finally:
        del os.environ["DIALER_DATA_DIR"], os.environ["DIALER_PORT"]
    return code, capsys.readouterr().err


def test_a_file_from_a_newer_dialer_is_refused_with_a_clear_message(tmp_path, capsys):
    shutil.copy(V1_FILE, tmp_path / "dialer.db")
    conn = sqlite3.connect(tmp_path / "dialer.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    code, err = _serve(tmp_path, capsys)
    assert code == 2 and "newer dialer (schema version 99" in err and "Traceback" not in err


@pytest.mark.parametrize("content, expected", [
    (b"this is not a database, it is a text file" * 200, "not an SQLite database"),
    (None, "another application"),
])
def test_a_foreign_or_corrupt_file_is_refused_with_a_clear_message(tmp_path, capsys, content, expected):
    path = tmp_path / "dialer.db"
    if content is None:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        conn.close()
    else:
        path.write_bytes(content)
    code, err = _serve(tmp_path, capsys)
    assert code == 2 and expected in err and "Traceback" not in err


def test_a_data_directory_that_cannot_be_made_is_a_clear_message(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    code, err = _serve(blocker / "data", capsys)
    assert code == 2 and "data directory" in err and "Traceback" not in err


async def test_a_full_disk_fails_chunks_whole_and_reports_them(tmp_path):
    async with Running(tmp_path, chunk_size=500) as app:
        code, created = await app.call("POST", "/api/call/createBatch", {"name": "full", "agentId": await app.agent()})
        batch_id = created["data"]["batchId"]
        database = app.client.app[__import__("dialer.api.appkeys", fromlist=["REPOS"]).REPOS].database
        pages = await database.write(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
        await database.write(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages + 300}"))  # ~1.2 MB more: a few chunks fit
        code, answer = await app.call("POST", "/api/call/addCallsToBatch", {"batchId": batch_id, "call_data": records(3000)})
        assert code == 207, answer
        failed = answer["data"]["failedChunks"]
        assert failed and all("SQLITE_FULL" in f["error"] for f in failed)
        # Exactly what the answer claims was written: whole chunks, nothing half-written.
        code, batch = await app.call("GET", f"/api/call/batches/{batch_id}")
        assert batch["data"]["counters"]["scheduled"] == answer["data"]["added"] == 500 * (6 - len(failed))
        # With no room left at all, a request whose every chunk fails is a 503 in the envelope, never a 500.
        await database.write(lambda conn: conn.execute(
            f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}"))
        code, refused = await app.call("POST", "/api/call/addCallsToBatch",
                                       {"batchId": batch_id, "call_data": records(200, "+1718555")})
        assert code == 503 and refused["code"] == 503 and refused["data"]["added"] == 0


async def test_a_write_lock_held_too_long_by_another_process_is_a_503(tmp_path):
    async with Running(tmp_path, sqlite_busy_timeout_ms=200) as app:
        agent = await app.agent()
        other = sqlite3.connect(tmp_path / "dialer.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            code, refused = await app.call("POST", "/api/call/createBatch", {"name": "busy", "agentId": agent})
            assert code == 503 and "SQLITE_BUSY" in refused["errorMessage"]
            assert (await app.call("GET", "/api/call/batches"))[0] == 200  # reads go on meanwhile (WAL)
        finally:
            other.execute("ROLLBACK")
            other.close()
        code, _ = await app.call("POST", "/api/call/createBatch", {"name": "busy", "agentId": agent})
        assert code == 200


async def test_two_processes_sharing_the_file_keep_one_compare_and_set(tmp_path):
    """Two stores on one file (as `dialer serve` and `dialer worker` are): of two writers holding the
    same ledger version, exactly one wins, however their writes interleave."""
    path = str(tmp_path / "dialer.db")
    first, second = await open_sqlite(path), await open_sqlite(path)
    try:
        for _ in range(20):
            a, b = await asyncio.gather(first.ledger.read(), second.ledger.read())
            assert a.version == b.version
            won = await asyncio.gather(first.ledger.write(a.version, [], None),
                                       second.ledger.write(b.version, [], None))
            assert sorted(won) == [False, True]
    finally:
        await first.close()
        await second.close()


async def test_a_live_database_is_backed_up_and_the_copy_restores(tmp_path, capsys, monkeypatch):
    live, restored = tmp_path / "live", tmp_path / "restored"
    async with Running(live) as app:
        code, created = await app.call("POST", "/api/call/createBatch", {"name": "backed up", "agentId": await app.agent()})
        batch_id = created["data"]["batchId"]
        await app.call("POST", "/api/call/addCallsToBatch", {"batchId": batch_id, "call_data": records(30)})
        monkeypatch.setenv("DIALER_DATA_DIR", str(live))
        target = tmp_path / "backup.db"
        assert await asyncio.to_thread(cli_main, ["--config", "/dev/null", "backup", str(target)]) == 0
        assert '"bytes"' in capsys.readouterr().out
        await app.call("POST", "/api/call/addCallsToBatch", {"batchId": batch_id, "call_data": records(5, "+1646555")})
    restored.mkdir()
    shutil.copy(target, restored / "dialer.db")  # the restore: the copy becomes the data file
    async with Running(restored) as app:
        code, batch = await app.call("GET", f"/api/call/batches/{batch_id}")
        assert code == 200 and batch["data"]["counters"]["scheduled"] == 30  # as it was when the copy was taken


async def test_open_refuses_a_newer_file_directly(tmp_path):
    path = tmp_path / "dialer.db"
    await (await open_sqlite(str(path))).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreOpenFailed, match="newer"):
        await open_sqlite(str(path))


async def test_processes_starting_together_on_a_new_or_old_file_all_start(tmp_path):
    """Found in review: a process reading the header while another created the schema took the file for
    another application's; a file not yet in WAL mode refused a second process's switch at once."""
    for round_ in range(8):
        folder = tmp_path / f"round-{round_}"
        folder.mkdir()
        if round_ % 2:
            shutil.copy(V1_FILE, folder / "dialer.db")  # an old file, in rollback-journal mode
        stores = await asyncio.gather(*(open_sqlite(str(folder / "dialer.db")) for _ in range(4)))
        for store in stores:
            await store.close()
        conn = sqlite3.connect(folder / "dialer.db")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()


async def test_reconciliation_never_corrects_exact_counters_while_calls_move(tmp_path):
    """Found in review: the recount and the tallies read apart made a claim between them look like drift,
    twice in a row, and the 'repair' broke counters the triggers keep exact."""
    from dialer.core.clock import FixedClock
    from dialer.ports import Claim
    from dialer.services.counters import CounterReconciler
    from tests.contract.conftest import batch_doc, planned

    repos = await open_sqlite(str(tmp_path / "dialer.db"))
    try:
        batch = batch_doc()
        await repos.batches.insert(batch)
        for start in range(0, 20_000, 1000):
            await repos.calls.enqueue(batch, [planned(f"+1212{i:07d}") for i in range(start, start + 1000)], T0)
        due = [c["_id"] for c in await repos.calls.due(batch["_id"], T0, 20_000)]
        reconciler = CounterReconciler(repos.batches, repos.calls, FixedClock(T0))
        looked = 0

        async def claims() -> None:  # a dispatcher claiming five calls at a time, as long as the looks go on
            for i in range(0, len(due), 5):
                await repos.calls.claim([Claim(c, "t", "d", T0, T0) for c in due[i:i + 5]], [], [], T0)
                if looked >= 12:
                    return
                await asyncio.sleep(0.002)

        async def looks() -> None:
            nonlocal looked
            while looked < 12:
                doc = await repos.batches.get(batch["_id"])
                await reconciler.check(doc, *(await repos.calls.audit_many([doc["_id"]]))[doc["_id"]])
                looked += 1

        await asyncio.gather(claims(), looks())
        assert reconciler.repaired == 0
        assert set(await repos.calls.tallies(batch["_id"])) == set(await repos.calls.recount(batch["_id"]))
    finally:
        await repos.close()


async def test_a_closed_store_answers_store_unavailable(tmp_path):
    from dialer.ports import StoreUnavailable

    repos = await open_sqlite(str(tmp_path / "dialer.db"))
    await repos.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await repos.batches.runnable(T0)
    with pytest.raises(StoreUnavailable, match="closed"):
        await repos.ledger.write(0, [], None)


def test_backup_of_a_missing_database_creates_nothing(tmp_path, capsys, monkeypatch):
    """Found in review: a mistyped DIALER_DATA_DIR made an empty database and 'backed it up'."""
    monkeypatch.setenv("DIALER_DATA_DIR", str(tmp_path / "typo"))
    assert cli_main(["--config", "/dev/null", "backup", str(tmp_path / "copy.db")]) == 1
    assert "no database" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists() and not (tmp_path / "copy.db").exists()


async def test_a_backup_into_a_folder_is_named_by_its_time_and_a_failed_one_leaves_nothing(tmp_path, capsys, monkeypatch):
    """Found by an exploratory run: `dialer backup <an existing folder>` failed but left a full-size .partial file
    beside it, saying "backup failed: backup failed: ..."."""
    data = tmp_path / "data"
    repos = await open_sqlite(str(data / "dialer.db"))
    await repos.close()
    monkeypatch.setenv("DIALER_DATA_DIR", str(data))
    folder = tmp_path / "backups"
    folder.mkdir()
    assert cli_main(["--config", "/dev/null", "backup", str(folder)]) == 0
    [copy] = folder.iterdir()
    assert copy.name.startswith("dialer-") and copy.suffix == ".db" and copy.stat().st_size > 0
    capsys.readouterr()
    assert cli_main(["--config", "/dev/null", "backup", str(tmp_path / "missing" / "x.db")]) == 1
    err = capsys.readouterr().err
    assert err.count("backup failed") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "data"]  # no partial file anywhere


async def test_a_backup_onto_the_live_database_or_into_no_folder_is_refused_before_copying(tmp_path, capsys,
                                                                                             monkeypatch):
    """`dialer backup var/dialer.db` replaced the file the engine writes with the copy (its later writes went to
    the unlinked file); a target in a folder that is not there said only SQLITE_CANTOPEN."""
    data = tmp_path / "data"
    repos = await open_sqlite(str(data / "dialer.db"))
    await repos.close()
    monkeypatch.setenv("DIALER_DATA_DIR", str(data))
    live = data / "dialer.db"
    before = (live.stat().st_ino, sorted(p.name for p in data.iterdir()))
    assert cli_main(["--config", "/dev/null", "backup", str(live)]) == 2
    assert "is the live database itself" in capsys.readouterr().err
    assert (live.stat().st_ino, sorted(p.name for p in data.iterdir())) == before  # untouched, no partial file
    assert cli_main(["--config", "/dev/null", "backup", str(tmp_path / "missing" / "x.db")]) == 1
    assert capsys.readouterr().err.strip() == f"backup failed: there is no folder {tmp_path / 'missing'}"


async def test_a_backup_interrupted_by_ctrl_c_leaves_no_partial_file(tmp_path, monkeypatch):
    """Ctrl-C during the copy left its `.partial-<pid>` file (only errors cleaned up after themselves)."""
    import dialer.store.sqlite.database as database

    data = tmp_path / "data"
    repos = await open_sqlite(str(data / "dialer.db"))
    await repos.close()
    monkeypatch.setenv("DIALER_DATA_DIR", str(data))

    def interrupted(*args):  # the copy is written: Ctrl-C arrives before it is put in place
        raise KeyboardInterrupt

    monkeypatch.setattr(database.os, "replace", interrupted)
    assert cli_main(["--config", "/dev/null", "backup", str(tmp_path / "copy.db")]) == 1  # click: Abort
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
