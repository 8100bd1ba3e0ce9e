"""The SQLite file and the threads its statements run on: nothing here runs a statement on the event loop.

A `Database` owns two connections, each on a thread of its own: the **writer** runs every unit of work
that writes, as one `BEGIN IMMEDIATE` transaction (the file's write lock is taken before the first read,
so a compare-and-set reads and writes under one lock, across processes too); the **reader** runs reads,
which WAL lets proceed while a write is under way here or in another process. An in-memory database
(`:memory:`, for tests and benchmarks) has one connection, on one thread, for both.

A unit of work is a plain function of the connection; it runs whole or not at all. Failures leave as
`StoreUnavailable` named by SQLite's error code (SQLITE_BUSY once `busy_timeout` has been waited out,
SQLITE_FULL for a full disk), never with a statement or a value in the message.

Durability: WAL with `synchronous=NORMAL` (the default) commits without an fsync; a committed transaction
survives a crash of the process (it is in the WAL file, which the OS keeps), and a power loss or an OS
crash can lose the transactions committed since the last checkpoint, never the file's consistency.
`synchronous=FULL` fsyncs the WAL at every commit: nothing acknowledged is lost even then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from dialer.ports import StoreOpenFailed, StoreUnavailable
from dialer.store.sqlite.schema import migrate

log = logging.getLogger("dialer.store.sqlite")
T = TypeVar("T")
MEMORY = ":memory:"
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def unavailable(exc: sqlite3.Error) -> StoreUnavailable:
    """A driver error as the ports name it: its SQLite code only (SQLITE_BUSY, SQLITE_FULL, ...)."""
    code = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    what = {"SQLITE_BUSY": "the database stayed busy (another process held its write lock)",
            "SQLITE_LOCKED": "the database stayed locked",
            "SQLITE_FULL": "the disk (or the database's size limit) is full",
            "SQLITE_IOERR": "the disk failed a read or a write",
            "SQLITE_READONLY": "the database file is read-only"}
    for prefix, text in what.items():
        if code.startswith(prefix):
            return StoreUnavailable(f"database error: {code}: {text}")
    return StoreUnavailable(f"database error: {code}")


READERS = 2  # a long read (a recount of a large batch) must not hold up the key lookup of every request


class Database:
    def __init__(self, path: str, synchronous: str = "NORMAL", busy_timeout_ms: int = 10_000,
                 cache_kib: int = 16_384) -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        if self.synchronous not in SYNCHRONOUS:
            raise StoreOpenFailed(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not {synchronous!r}")
        self.busy_timeout_ms = busy_timeout_ms
        self.cache_kib = cache_kib
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []  # every thread's, closed by close()
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self.closed = False
        self.operations = 0  # units of work run (the benchmarks' "database operations")

    @property
    def in_memory(self) -> bool:
        return self.path == MEMORY

    # ---- opening and closing -------------------------------------------------------------------
    async def open(self) -> None:
        if not self.in_memory:
            folder = Path(self.path).resolve().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreOpenFailed(f"cannot create the data directory {folder}: {exc.strerror}") from None
            if not os.access(folder, os.W_OK):
                raise StoreOpenFailed(f"the data directory {folder} is not writable")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        # Readers connect on first use, each on its own thread (`:memory:` is one connection: the writer's).
        self._reader = self._writer if self.in_memory else ThreadPoolExecutor(READERS, thread_name_prefix="sqlite-reader")
        try:
            await asyncio.get_running_loop().run_in_executor(self._writer, self._open_writer)
        except BaseException:
            await self.close()
            raise

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (made on its first unit of work)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.closed:
                raise StoreUnavailable("database error: the store is closed")
            conn = self._connect()
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            # Each connection is used by its own thread only; close() closes them all once those have stopped.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute(f"PRAGMA cache_size = -{int(self.cache_kib)}")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            if not self.in_memory:
                self._wal(conn)
        except sqlite3.DatabaseError as exc:
            raise StoreOpenFailed(self._explain(exc)) from None
        self._local.conn = conn
        self._connections.append(conn)
        return conn

    def _wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL. The switch answers SQLITE_BUSY at once (without the busy handler) while
        another process holds the file, as when several start together on a file not yet in WAL mode:
        tried again until the busy timeout has passed."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if not str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_BUSY") or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise StoreOpenFailed(f"{self.path}: the file cannot use WAL mode (journal_mode {mode})")

    def _open_writer(self) -> None:
        conn = self._connect()
        try:
            migrate(conn, self.path)
            if not self.in_memory:
                self._probe_write(conn)
        except sqlite3.DatabaseError as exc:
            raise StoreOpenFailed(self._explain(exc)) from None

    @staticmethod
    def _probe_write(conn: sqlite3.Connection) -> None:
        """One write, changing nothing: SQLite opens a file it may not write (another user's, mode 644; an immutable
        one) read-only without a word, and a file already at the latest schema needs no write to open: the server
        started, listened, and failed every write with SQLITE_READONLY. Raises that at the start instead."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def _explain(self, exc: sqlite3.Error) -> str:
        code = getattr(exc, "sqlite_errorname", "") or ""
        if code.startswith(("SQLITE_FULL", "SQLITE_IOERR")):  # a full disk reads as SQLITE_IOERR_SHMSIZE at open
            folder = Path(self.path).resolve().parent
            with contextlib.suppress(OSError):
                free = shutil.disk_usage(folder).free
                if code.startswith("SQLITE_FULL") or free < 1024 * 1024:
                    return (f"cannot open {self.path}: the disk holding {folder} is full ({free:,} bytes free): "
                            f"free some space and start again ({code})")
        if code.startswith("SQLITE_NOTADB") or "not a database" in str(exc):
            return f"{self.path} is not an SQLite database (a corrupt or foreign file): move it away or restore a backup"
        if code.startswith("SQLITE_CANTOPEN"):
            return f"cannot open {self.path}: check that its directory exists and is writable"
        if code.startswith("SQLITE_CORRUPT"):
            return f"{self.path} is corrupt: restore a backup (see docs/storage.md, 'Back-up and restore')"
        if code.startswith("SQLITE_READONLY"):
            owner = ""
            with contextlib.suppress(OSError):
                st = os.stat(self.path)
                owner = f" (owner uid {st.st_uid}, mode {st.st_mode & 0o777:o}; this process runs as uid {os.geteuid()})"
            return (f"{self.path} is read-only{owner}: the dialer must be able to write it and its data directory "
                    f"(chown or chmod it, or check `lsattr` for the immutable flag)")
        return f"cannot open {self.path}: {code or type(exc).__name__} ({exc})"

    async def close(self) -> None:
        """No unit of work starts after this (StoreUnavailable); those running finish, then every
        connection closes (a clean stop folds the WAL into the file)."""
        self.closed = True
        pools = {id(p): p for p in (self._reader, self._writer) if p is not None}.values()
        self._writer = self._reader = None
        for pool in pools:
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown, True)
        for conn in self._connections:
            if not self.in_memory:
                try:  # another process may still use the file: a passive checkpoint never waits for it
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass
            conn.close()
        self._connections.clear()

    # ---- units of work -------------------------------------------------------------------------
    async def write(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work(conn, *args)` on the writer as one immediate transaction: all of it or nothing."""
        return await self._submit(self._writer, self._transaction, work, args)

    async def read(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work(conn, *args)` on a reader, in one read transaction (a consistent snapshot)."""
        return await self._submit(self._reader, self._snapshot, work, args)

    async def _submit(self, pool: ThreadPoolExecutor | None, run: Callable, work: Callable, args: tuple) -> Any:
        if pool is None or self.closed:
            raise StoreUnavailable("database error: the store is closed")
        try:
            future = asyncio.get_running_loop().run_in_executor(pool, run, work, args)
        except RuntimeError:  # the pool shut down meanwhile
            raise StoreUnavailable("database error: the store is closed") from None
        return await future

    def _transaction(self, work: Callable[..., T], args: tuple) -> T:
        conn = self._connection()
        self.operations += 1
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise unavailable(exc) from None
        try:
            result = work(conn, *args)
            conn.execute("COMMIT")
            return result
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, sqlite3.Error):
                raise unavailable(exc) from None
            raise

    def _snapshot(self, work: Callable[..., T], args: tuple) -> T:
        conn = self._connection()
        self.operations += 1
        try:
            conn.execute("BEGIN")
            try:
                return work(conn, *args)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise unavailable(exc) from None


def backup(source: str, target: str) -> int:
    """A consistent copy of the database at `source` (live or not) at `target`, through SQLite's online
    backup API in one step (a snapshot; writers go on meanwhile). The source is opened read-only: no file
    is created where none is, and nothing is migrated. Returns the copy's size in bytes."""
    if not Path(source).is_file():
        raise StoreOpenFailed(f"there is no database at {source}: check DIALER_DATA_DIR")
    temporary = f"{target}.partial-{os.getpid()}"
    started = time.monotonic()
    try:
        origin = _open_source(source, temporary)
        try:
            destination = sqlite3.connect(temporary)
            try:
                origin.backup(destination)
                destination.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
            finally:
                destination.close()
        finally:
            origin.close()
        os.replace(temporary, target)
    except BaseException as exc:  # never a partial copy left behind: an error, or Ctrl-C during the copy
        # (the copy's rollback journal too: a disk that filled during the copy left `<target>.partial-<pid>-journal`)
        for leftover in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.remove(temporary + leftover)
        if isinstance(exc, sqlite3.Error):
            code = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
            full = "; is the disk holding the copy full?" if code.startswith(("SQLITE_FULL", "SQLITE_IOERR_WRITE")) else ""
            raise StoreUnavailable(f"{code} ({exc}){full}") from None
        raise
    finally:
        for leftover in ("", "-wal", "-shm", "-journal"):  # the source's own copy (a read-only filesystem)
            with contextlib.suppress(OSError):
                os.remove(f"{temporary}.source{leftover}")
    size = os.path.getsize(target)
    log.info("backup written", extra={"target": target, "bytes": size, "seconds": round(time.monotonic() - started, 3)})
    return size


def _open_source(source: str, temporary: str) -> sqlite3.Connection:
    """The database to copy from, read-only. On a read-only filesystem (a disk the kernel remounted read-only
    after errors: the moment a backup is wanted most) SQLite cannot open a WAL database without creating its
    `-shm` (SQLITE_CANTOPEN), and `immutable=1` would ignore the WAL's commits: the file and its WAL are copied
    beside the target first (nothing can write a read-only filesystem, so the two are consistent) and read there."""
    try:
        read_only = bool(os.statvfs(Path(source).resolve().parent).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        shutil.copyfile(source, f"{temporary}.source")
        if Path(f"{source}-wal").is_file():
            shutil.copyfile(f"{source}-wal", f"{temporary}.source-wal")
        return sqlite3.connect(f"{temporary}.source")
    return sqlite3.connect(f"{Path(source).resolve().as_uri()}?mode=ro", uri=True)
