"""Wake-ups between the processes of one machine sharing the SQLite file: a call ended by an event applied in
one process (Twilio's callback to `dialer serve`) frees a slot that a dispatcher in another process (`dialer
worker`) waits for. Without a wake-up that dispatcher sees it at its next recheck (2 s).

Each dispatcher process listens on a Unix datagram socket in `<DIALER_DATA_DIR>/wake/`; a process applying
events sends each ended call's batch (a claim put back in the queue unplaced too) to every socket there but
its own, and a process given work (calls enqueued, a group's next call activated, a batch started or changed)
says so, never waiting. What one turn of the event loop told goes in one datagram (a listener's queue holds 10
on Linux: a hundred calls ending a second sent one by one filled it), and what a full queue did not take is sent
again 20 ms later. A socket nobody reads any more (its process died) is removed by the first send that finds it
so, and each process starting removes those of the processes that died (`WakeSender.sweep`). A wake-up is a hint, never the record: one lost (a listener starting, more than PENDING_MAX waiting for one
listener) costs that dispatcher its recheck (10 s for a dispatcher that listens, WOKEN_RECHECK_SECONDS; 2 s for
one that cannot). Processes on other machines (MongoDB) are not reached: they keep their 2 s recheck.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from pathlib import Path
from typing import Callable

from bson import ObjectId

log = logging.getLogger("dialer.wakeups")

KINDS = {b"f": "final", b"r": "retry"}  # what became of the call (CallEvents.on_ended's kind), one byte
RECORD = 13  # a datagram carries records: a batch's id (12 bytes) and what became of its call (1), or WORK
WORK = b"w" * RECORD  # work arrived (no batch named: the dispatcher looks at the batches changed since its last look)
DATAGRAM_RECORDS = 300  # records per datagram (3,900 bytes)
PENDING_MAX = 10_000  # records kept per listener whose queue is full; beyond, the oldest are lost (the recheck)
RETRY_SECONDS = 0.02  # a full queue is tried again this late
WOKEN_RECHECK_SECONDS = 10.0
SOCKET_PATH_MAX = 100  # a Unix socket's path must fit sockaddr_un (108 bytes on Linux, 104 on macOS)


def wake_folder(data_dir: str) -> Path:
    return Path(data_dir) / "wake"


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, on_ended: Callable[[ObjectId, str], None], on_work: Callable[[], None]) -> None:
        self.on_ended = on_ended
        self.on_work = on_work

    def datagram_received(self, data: bytes, addr) -> None:
        for at in range(0, len(data) - RECORD + 1, RECORD):  # records of 13 bytes, as many as the sender had
            record = data[at:at + RECORD]
            if record == WORK:
                self.on_work()
            elif record[12:] in KINDS:
                self.on_ended(ObjectId(record[:12]), KINDS[record[12:]])


class WakeListener:
    """A dispatcher process's socket: each datagram is a call of another process that left flight, or work."""

    def __init__(self, folder: Path, on_ended: Callable[[ObjectId, str], None], on_work: Callable[[], None]) -> None:
        self.folder = folder
        self.on_ended = on_ended
        self.on_work = on_work
        self.path: Path | None = None
        self._transport: asyncio.BaseTransport | None = None

    async def start(self) -> bool:
        """Listen; False (and a warning) when it cannot: the dispatcher then relies on its recheck."""
        path = self.folder / f"{os.getpid()}-{secrets.token_hex(3)}.sock"
        if len(str(path)) > SOCKET_PATH_MAX:
            log.warning("no wake-ups from other processes: the data folder's path is too long for a socket",
                        extra={"path": str(self.folder)})
            return False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Receiver(self.on_ended, self.on_work), local_addr=str(path), family=socket.AF_UNIX)
        except OSError as exc:
            log.warning("no wake-ups from other processes: cannot listen", extra={"error": type(exc).__name__})
            return False
        self.path = path
        return True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


class WakeSender:
    """What a process applying call events tells the other dispatchers of the machine (a CallEvents.on_ended
    listener). `own`: this process's listener, if it has one (its dispatcher hears its events directly)."""

    LIST_EVERY = 1.0  # seconds between two reads of the folder (listeners come and go rarely)

    def __init__(self, folder: Path, own: WakeListener | None = None) -> None:
        self.folder = folder
        self.own = own
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._peers: list[str] = []
        self._listed_at = float("-inf")
        self._records: list[bytes] = []  # told since the last flush, for every listener
        self._waiting: dict[str, list[bytes]] = {}  # per listener, what its full queue did not take yet
        self._flush: asyncio.Handle | None = None
        self.sent = 0  # datagrams
        self.lost = 0  # records

    def __call__(self, batch_id: ObjectId, kind: str) -> None:
        """A call of this batch left flight here (`kind`: final or retry)."""
        self._tell(batch_id.binary + (b"r" if kind == "retry" else b"f"))

    def work(self) -> None:
        """Work arrived here: calls enqueued, a group's next call activated, a batch started or changed."""
        self._tell(WORK)

    def _tell(self, record: bytes) -> None:
        """Sent once this turn of the event loop is over, with whatever else was told in it: a listener's queue
        holds few datagrams (10 on Linux by default), and a hundred calls ending a second must not fill it."""
        self._records.append(record)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._flush = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._listed_at >= self.LIST_EVERY:
            self._listed_at = now
            self._peers = self._list()
            self._waiting = {p: w for p, w in self._waiting.items() if p in self._peers}
        # Every ended call counts (a dispatcher waits for as many freed slots as its next claim group); work once.
        records, self._records = self._records, []
        if records.count(WORK) > 1:
            records = [r for r in records if r != WORK] + [WORK]
        for peer in list(self._peers):
            queue = self._waiting.pop(peer, []) + records
            while queue:
                chunk = queue[:DATAGRAM_RECORDS]
                try:
                    self._sock.sendto(b"".join(chunk), peer)
                    self.sent += 1
                    del queue[:len(chunk)]
                except (ConnectionRefusedError, FileNotFoundError):  # its process is gone
                    self._peers.remove(peer)
                    Path(peer).unlink(missing_ok=True)
                    break
                except BlockingIOError:  # its queue is full: the rest is tried again shortly
                    self.lost += max(0, len(queue) - PENDING_MAX)
                    self._waiting[peer] = queue[-PENDING_MAX:]
                    break
                except OSError:  # another failure: the hint is lost (the listener's recheck)
                    self.lost += len(queue)
                    break
        if self._waiting and self._flush is None:
            self._flush = loop.call_later(RETRY_SECONDS, self._send)

    def sweep(self) -> int:
        """Remove the sockets of processes that died without closing them (kill -9, the OOM killer), which only a
        send used to remove: a machine whose dialer was killed and restarted while idle gathered two more in wake/
        each time. A socket nobody listens on refuses a connection; a live one accepts it (nothing is sent, and its
        process may be in another PID namespace: no pid is trusted). Returns how many were removed."""
        removed = 0
        for peer in self._list():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                probe.connect(peer)
            except (ConnectionRefusedError, FileNotFoundError):
                Path(peer).unlink(missing_ok=True)
                removed += 1
            except OSError:
                pass  # not ours to judge (a permission, a path too long): left as it is
            finally:
                probe.close()
        if removed:
            log.info("removed the wake-up sockets of processes that died", extra={"sockets": removed})
        return removed

    def _list(self) -> list[str]:
        own = str(self.own.path) if self.own is not None and self.own.path is not None else None
        try:
            return [str(p) for p in self.folder.glob("*.sock") if str(p) != own]
        except OSError:
            return []

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._sock.close()
