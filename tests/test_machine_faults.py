"""What an operator running the dialer on one machine meets when the machine misbehaves, through the CLI and real
processes: a disk that fills under `dialer backup`. (tests/test_sqlite_store.py keeps the store's own promises.)"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

from dialer.store.sqlite import open_sqlite

ROOT = Path(__file__).resolve().parent.parent


def _dialer(args: list[str], env: dict[str, str], file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """`python -m dialer ARGS`; `file_size_limit`: no file it writes may grow beyond these bytes (RLIMIT_FSIZE: its
    writes then fail as on a full disk; Python ignores SIGXFSZ)."""
    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "dialer", "--config", "/nonexistent.yaml", *args], cwd=ROOT,
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
