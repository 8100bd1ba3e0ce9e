"""What an operator running the dialer on one machine meets when the machine misbehaves, through the CLI and real
processes: a disk that fills under `dialer backup`. (tests/test_sqlite_store.py keeps the store's own promises.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from dialer.store.sqlite import open_sqlite

ROOT = Path(__file__).resolve().parent.parent


def _dialer(args: list[str], env: dict[str, str], file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """`python -m dialer ARGS`; `file_size_limit`: no file it writes may grow beyond these bytes (RLIMIT_FSIZE: its
    writes then fail as on a full disk; Python ignores SIGXFSZ)."""
    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "dialer", "--config", "/dev/null", *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                          timeout=120, preexec_fn=limit)


async def test_a_backup_onto_a_disk_that_fills_leaves_nothing_behind_and_says_why(tmp_path):
    """Found by an exploratory run (`dialer backup` into a 1 MB tmpfs): the copy failed, as it should, but left its
    rollback journal, `dialer-<time>.db.partial-<pid>-journal`, beside the backups; each failed night added one."""
    data, backups = tmp_path / "data", tmp_path / "backups"
    repos = await open_sqlite(str(data / "dialer.db"))
    await repos.database.write(lambda conn: conn.execute("CREATE TABLE ballast (b BLOB)"))
    await repos.database.write(lambda conn: conn.executemany("INSERT INTO ballast VALUES (?)",
                                                             [(os.urandom(4096),) for _ in range(100)]))
    await repos.close()
    backups.mkdir()
    out = _dialer(["backup", str(backups)], {"DIALER_DATA_DIR": str(data)}, file_size_limit=64 * 1024)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    [line] = out.stderr.splitlines()
    assert line.startswith("backup failed: SQLITE_") and line.endswith("is the disk holding the copy full?")
    assert list(backups.iterdir()) == []  # no partial copy, no journal
    out = _dialer(["backup", str(backups)], {"DIALER_DATA_DIR": str(data)})  # room again: the copy is whole
    assert out.returncode == 0, out.stderr
    [copy] = backups.iterdir()
    assert copy.stat().st_size > 400_000


@pytest.mark.parametrize("stop", ["clean", "killed"])
def test_a_backup_from_a_filesystem_remounted_read_only_is_whole(stop, tmp_path):
    """Found by an exploratory run: with the data folder on a read-only filesystem (a disk the kernel remounted
    read-only after errors, when a backup is wanted most) `dialer backup` of a server stopped cleanly said only
    SQLITE_CANTOPEN: SQLite cannot open a WAL database read-only without creating its -shm. A server killed
    leaves its last commits in the WAL: the copy must hold them."""
    with tmpfs(tmp_path / "disk", "4m") as mount:
        data = mount / "data"
        # A server killed after its last commits: they are in dialer.db-wal, not yet in dialer.db.
        writer = ("import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
                  "c.execute('PRAGMA journal_mode = WAL'); c.execute('PRAGMA wal_autocheckpoint = 0'); "
                  "c.execute('CREATE TABLE t (n)'); c.executemany('INSERT INTO t VALUES (?)', [(i,) for i in range(500)]); "
                  + ("c.close()" if stop == "clean" else "os._exit(0)"))
        data.mkdir()
        subprocess.run([sys.executable, "-c", writer, str(data / "dialer.db")], check=True, timeout=60)
        assert (data / "dialer.db-wal").exists() == (stop == "killed")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        out = _dialer(["backup", str(tmp_path / "copy.db")], {"DIALER_DATA_DIR": str(data)})
        assert out.returncode == 0, out.stderr
        copy = sqlite3.connect(tmp_path / "copy.db")
        assert copy.execute("SELECT count(*) FROM t").fetchone() == (500,)
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        copy.close()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db", "disk"]  # its working copies removed


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB filesystem of its own, unmounted afterwards."""
    with tmpfs(tmp_path / "small", "2m") as mount:
        yield mount


@contextlib.contextmanager
def tmpfs(mount: Path, size: str):
    """A tmpfs of `size` mounted at `mount` (made here; mounting needs root, else the test is skipped), unmounted
    on the way out."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root")
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)])


@pytest.mark.parametrize("existing", [True, False])
def test_a_start_on_a_full_disk_says_the_disk_is_full(existing, small_disk):
    """Found by an exploratory run: on a full disk `dialer serve` said "cannot open .../dialer.db:
    SQLITE_IOERR_SHMSIZE (disk I/O error)" (an existing file: its -shm cannot grow), which reads as a failing disk."""
    data = small_disk / "data"
    if existing:
        assert _dialer(["workspace-create", "w"], {"DIALER_DATA_DIR": str(data)}).returncode == 0
    ballast = small_disk / "ballast"
    with open(ballast, "wb") as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
                out.flush()
    for command in ("serve", "workspace-list"):
        out = _dialer([command], {"DIALER_DATA_DIR": str(data), "DIALER_WARM_BODY_PARSER": "false"})
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        [line] = out.stderr.splitlines()
        assert f"the disk holding {data} is full" in line and "free some space and start again" in line, line
    ballast.unlink()
    out = _dialer(["workspace-list"], {"DIALER_DATA_DIR": str(data)})
    assert out.returncode == 0 and ('"name": "w"' in out.stdout) == existing, out.stderr


def _worker(data: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dialer", "--config", "/dev/null", "worker"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "DIALER_DATA_DIR": str(data),
                                 "DIALER_WORKER_METRICS_PORT": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _sockets_when(folder: Path, ready, seconds: float = 60) -> set[str]:
    """The socket names in `folder` once `ready(names)` holds."""
    deadline = time.monotonic() + seconds
    names: set[str] = set()
    while time.monotonic() < deadline:
        names = {p.name for p in folder.glob("*.sock")} if folder.is_dir() else set()
        if ready(names):
            return names
        time.sleep(0.1)
    raise AssertionError(f"{folder}: {names}")


def test_the_wake_up_sockets_of_killed_processes_do_not_pile_up(tmp_path):
    """Found by an exploratory run: `dialer serve` and `dialer worker` killed with -9 (the OOM killer, a deploy's
    SIGKILL) and restarted while no call ended left their sockets in DIALER_DATA_DIR/wake/, two more each round;
    only a send removed them, and an idle machine sends nothing. Each process starting now removes them."""
    data = tmp_path / "data"
    wake = data / "wake"
    for _ in range(3):
        worker = _worker(data)
        try:
            _sockets_when(wake, lambda names: any(n.startswith(f"{worker.pid}-") for n in names))
            time.sleep(1)  # its start goes on after it listens (the sweep)
        finally:
            worker.kill()
            worker.wait(timeout=60)
    worker = _worker(data)
    try:
        time.sleep(1)
        [own] = _sockets_when(wake, lambda names: any(n.startswith(f"{worker.pid}-") for n in names) and len(names) == 1,
                              seconds=30)
        assert own.startswith(f"{worker.pid}-")
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0 and "Traceback" not in err, err
    assert list(wake.iterdir()) == []  # a clean stop removes its own


async def _until_healthy(http: aiohttp.ClientSession) -> None:
    """Until the `dialer serve` a test started answers /health (at most 300 tries; its requests fail after)."""
    for _ in range(300):
        try:
            if (await http.get("/health")).status == 200:
                return
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)


def test_a_session_with_errors_logs_no_secret(tmp_path):
    """`dialer serve` with every secret set, driven into errors (bad keys and tokens, a forged Twilio callback, a
    webhook endpoint that refuses, Twilio unreachable): nothing it prints holds a secret. Found by an exploratory
    run: the demo key configured in DIALER_DEMO_API_KEY was printed at the first start, into the logs."""
    import signal

    from tests.crash_harness import free_port

    port = free_port()
    secrets = {"DIALER_DEMO_API_KEY": "demo-key-secret-0451", "DIALER_ADMIN_TOKEN": "admin-secret-0451",
               "TWILIO_AUTH_TOKEN": "twilio-secret-0451"}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIALER_DATA_DIR": str(tmp_path), "DIALER_PORT": str(port),
           "DIALER_WARM_BODY_PARSER": "false", "DIALER_LOG_LEVEL": "DEBUG", "DIALER_PROVIDER": "twilio",
           "TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_API_BASE": f"http://127.0.0.1:{free_port()}",
           "DIALER_PUBLIC_BASE_URL": "https://dialer.example", "DIALER_WEBHOOKS_ALLOW_INSECURE": "true",
           "DIALER_WEBHOOK_RETRY_DELAYS": "0,0.5", **secrets}
    server = subprocess.Popen([sys.executable, "-m", "dialer", "--config", "/dev/null", "serve"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    shown: list[str] = []

    async def drive() -> None:
        base, key = f"http://127.0.0.1:{port}", {"x-api-key": secrets["DIALER_DEMO_API_KEY"]}
        async with aiohttp.ClientSession(base) as http:
            await _until_healthy(http)
            await http.get("/api/call/batches", headers={"x-api-key": "wrong-key-0451"})
            await http.get("/api/admin/workspaces", headers={"Authorization": "Bearer wrong-admin-0451"})
            made = await (await http.post("/api/admin/workspaces", json={"name": "other"},
                                          headers={"Authorization": f"Bearer {secrets['DIALER_ADMIN_TOKEN']}"})).json()
            shown.append(made["data"]["apiKey"])
            endpoint = await (await http.post("/api/webhooks/endpoints", json={"url": f"http://127.0.0.1:{free_port()}/h"},
                                              headers=key)).json()
            shown.append(endpoint["data"]["secret"])
            rotated = await (await http.post(f"/api/webhooks/endpoints/{endpoint['data']['endpointId']}/rotate-secret",
                                             headers=key)).json()
            shown.append(rotated["data"]["secret"])
            await http.post(f"/api/webhooks/endpoints/{endpoint['data']['endpointId']}/test", headers=key)
            agent = (await (await http.get("/api/agents", headers=key)).json())["data"]["agents"][0]["agentId"]
            batch = (await (await http.post("/api/call/createBatch", json={"name": "b", "agentId": agent},
                                            headers=key)).json())["data"]["batchId"]
            await http.post("/api/call/addCallsToBatch", headers=key,
                            json={"batchId": batch, "call_data": [{"phoneNumber": "+12125550100"}]})
            await http.post("/webhooks/twilio/status", data={"CallSid": "CA1", "CallStatus": "completed"},
                            headers={"X-Twilio-Signature": "forged"})
            await asyncio.sleep(4)  # the webhook's attempts fail, the call's placement fails

    try:
        asyncio.run(drive())
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert "attempt" in output and "provider refused a call" in output, output  # the errors happened
    assert "Traceback" not in output
    for secret in [*secrets.values(), *shown, *(s.removeprefix("whsec_") for s in shown)]:
        assert secret not in output, secret


def test_a_disk_that_fills_under_a_running_server_is_503s_and_one_line_warnings_then_it_recovers(small_disk):
    """Found by an exploratory run: with the disk full, the partner webhook sender logged a traceback at each pass
    (every 0.5 s), lane and unrecorded attempt: 36 tracebacks in half a minute. Requests must be 503s with a
    reason, the log one line per failure, and the server must take up again by itself once space is freed."""
    import signal

    from tests.crash_harness import free_port

    port, data = free_port(), small_disk / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIALER_DATA_DIR": str(data), "DIALER_PORT": str(port),
           "DIALER_WARM_BODY_PARSER": "false", "DIALER_DEMO_API_KEY": "demo-key-0451",
           "DIALER_EMBEDDED_DISPATCHER": "false", "DIALER_WEBHOOKS_ALLOW_INSECURE": "true",
           "DIALER_WEBHOOK_RETRY_DELAYS": ",".join(["0"] + ["0.3"] * 50)}
    server = subprocess.Popen([sys.executable, "-m", "dialer", "--config", "/dev/null", "serve"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ballast = small_disk / "ballast"

    async def drive() -> None:
        key = {"x-api-key": "demo-key-0451"}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=key) as http:
            await _until_healthy(http)
            endpoint = await (await http.post("/api/webhooks/endpoints",
                                              json={"url": f"http://127.0.0.1:{free_port()}/h"})).json()
            test = f"/api/webhooks/endpoints/{endpoint['data']['endpointId']}/test"
            for _ in range(5):  # messages whose attempts fail, retried every 0.3 s
                assert (await http.post(test)).status == 200
            with open(ballast, "wb") as out:
                with contextlib.suppress(OSError):
                    while True:
                        out.write(b"\\0" * 65536)
                        out.flush()
            for _ in range(3):
                answer = await http.post(test)
                assert answer.status == 503, await answer.text()
                assert "full" in (await answer.json())["errorMessage"]
            await asyncio.sleep(3)  # the sender's passes meet the full disk
            ballast.unlink()
            for _ in range(50):  # taken up again without a restart
                if (await http.post(test)).status == 200:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("still failing after the disk was freed")

    try:
        asyncio.run(drive())
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert "SQLITE_FULL" in output and "Traceback" not in output, output
    check = sqlite3.connect(data / "dialer.db")
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()


def test_a_backup_stopped_by_sigterm_leaves_no_partial_file(tmp_path):
    """Found by an exploratory run: SIGTERM (a cron job's timeout, a service stopped) during `dialer backup` of a
    380 MB database left `dialer-<time>.db.partial-<pid>` (380 MB) and its journal; only Ctrl-C cleaned up."""
    import signal

    data, backups = tmp_path / "data", tmp_path / "backups"
    data.mkdir()
    backups.mkdir()
    big = sqlite3.connect(data / "dialer.db")
    big.execute("CREATE TABLE ballast (b)")
    big.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25000) "
                "INSERT INTO ballast SELECT randomblob(8192) FROM n")  # 200 MB: a copy of a second or so
    big.commit()
    big.close()
    copying = subprocess.Popen([sys.executable, "-m", "dialer", "--config", "/dev/null", "backup",
                                str(backups)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                              "DIALER_DATA_DIR": str(data)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(backups.glob("*.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.005)
    copying.send_signal(signal.SIGTERM)  # the copy under way
    out, err = copying.communicate(timeout=120)
    assert copying.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert err.strip() == "backup stopped (SIGTERM): no copy was left" and out == ""
    assert list(backups.iterdir()) == []


def test_a_database_file_that_cannot_be_written_stops_the_start(tmp_path):
    """Found by an exploratory run: a dialer.db this process may not write, in a folder it may (another user's
    file, mode 644; an immutable file), was opened read-only by SQLite without a word: `dialer serve` listened and
    answered every write with SQLITE_READONLY, its dispatcher and webhook sender logged a failure a second."""
    data = tmp_path / "data"
    assert _dialer(["workspace-list"], {"DIALER_DATA_DIR": str(data)}).returncode == 0  # the file, at the latest schema
    path = data / "dialer.db"
    if os.geteuid() == 0:  # root writes whatever the mode says: the immutable flag stops it
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("no immutable flag on this filesystem")
    else:
        path.chmod(0o444)
    try:
        for command in ("serve", "worker", "workspace-list"):
            out = _dialer([command], {"DIALER_DATA_DIR": str(data), "DIALER_WARM_BODY_PARSER": "false",
                                      "DIALER_WORKER_METRICS_PORT": "0"})
            assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
            [line] = out.stderr.splitlines()
            assert f"{path} is read-only (owner uid" in line, line
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)])
        path.chmod(0o644)


def test_an_import_stopped_by_sigterm_says_how_to_resume(tmp_path):
    """Found by an exploratory run: SIGTERM (a job's timeout, a container stopped) killed `dialer import-csv`
    without a word, where Ctrl-C says to run the same command again (each chunk's Idempotency-Key makes that
    safe). A server that takes the first chunk and never answers: the command is under way when stopped."""
    import signal
    import socket

    path = tmp_path / "contacts.csv"
    path.write_text("phone\n" + "".join(f"+1212555{i:04d}\n" for i in range(10)))
    with socket.socket() as silent:  # accepts the connection, reads nothing, answers nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        importing = subprocess.Popen([sys.executable, "-m", "dialer", "import-csv", str(path), "--batch",
                                      "64e5f12345abcdef98765432", "--url",
                                      f"http://127.0.0.1:{silent.getsockname()[1]}", "--key", "k"], cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        connection, _ = silent.accept()  # its first chunk is on its way
        with connection:
            importing.send_signal(signal.SIGTERM)
            out, err = importing.communicate(timeout=60)
    assert importing.returncode == 128 + signal.SIGTERM, err
    assert "interrupted: run the same command again (with --batch) to resume" in err and "Traceback" not in err
