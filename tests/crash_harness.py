"""Real processes for the crash tests (tests/test_crash.py): the dialer (`dialer serve`, `dialer worker`)
and the fake Twilio (tests/fake_twilio_server.py) as subprocesses on 127.0.0.1, a client that tells an
answer from no answer, and the chaos: kill -9 at chosen moments, restart on the same store, and retry
every request that got no answer with its Idempotency-Key until it gets one.

    stack = Stack(tmp_path, backend_env)        # ports, credentials, the fake's record file
    stack.start_fake(); stack.start_server()
    chaos = Chaos(stack, seed)                  # kill_after(delay, label): kill -9, restart, wait for /health
    answer = await chaos.send("POST", path, body, key=..., idem="k-1")   # retried until answered

Every answer given to a key (replays included) is kept in `chaos.answers`, and every kill in
`chaos.kills` (what was running, when), for the checks and for the failure message.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "crash-admin-token"
REQUEST_TIMEOUT = 60.0  # a request this slow counts as unanswered (it never should be)
ANSWER_DEADLINE = 120.0  # a request still unanswered after this long, retries included, fails the test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Answer:
    status: int
    body: bytes
    at: float  # time.time() when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class KillPoint:
    number: int
    label: str
    at: float  # seconds since the chaos began
    target: str  # serve | worker
    running: list[str]  # the requests in flight at the kill

    def __str__(self) -> str:
        busy = ", ".join(self.running) or "no request in flight"
        return f"#{self.number} {self.target} at {self.at:.2f}s, {self.label} ({busy})"


class Stack:
    """The fake Twilio and the dialer's processes, their ports, settings and logs, in `tmp`."""

    def __init__(self, tmp: Path, store_env: dict[str, str]) -> None:
        self.tmp = tmp
        self.port, self.fake_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.record = tmp / "twilio-calls.jsonl"
        self.sid, self.token = "AC" + os.urandom(16).hex(), os.urandom(16).hex()
        self.store_env = store_env
        self.fake: subprocess.Popen | None = None
        self.server: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.starts = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DIALER_", "TWILIO_", "MONGODB_"))}
        env.update(self.store_env)
        env.update({
            "DIALER_HOST": "127.0.0.1", "DIALER_PORT": str(self.port), "DIALER_ADMIN_TOKEN": ADMIN_TOKEN,
            "DIALER_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": self.sid, "TWILIO_AUTH_TOKEN": self.token,
            "TWILIO_API_BASE": f"http://127.0.0.1:{self.fake_port}", "TWILIO_TIMEOUT": "5",
            "DIALER_PUBLIC_BASE_URL": self.base, "DIALER_LOG_LEVEL": "WARNING",
            # Fast enough for a test: leases of 2 s (the reaper runs every second), 100 calls a second.
            "DIALER_LEASE_SECONDS": "2", "DIALER_POLL_INTERVAL": "0.05", "DIALER_CPS": "100",
            "DIALER_MAX_CONCURRENT": "200", "DIALER_WORKER_METRICS_PORT": "0",
            "DIALER_CHAIN_MIN_SUCCESS_SECONDS": "20", "DIALER_CHAIN_VERDICT_SECONDS": "1",
            "DIALER_IDEMPOTENCY_CLAIM_SECONDS": "2",  # a killed request's key is free again within 2 s
            "DIALER_INTAKE_LEASE_SECONDS": "2",  # and an enrollment it was scheduling resumes as soon
            "PYTHONUNBUFFERED": "1",
        })
        env.update(extra)
        return env

    def _spawn(self, args: list[str], log_name: str, env: dict[str, str]) -> subprocess.Popen:
        log = open(self.tmp / log_name, "ab")
        try:
            return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def start_fake(self, seed: int) -> None:
        self.fake = self._spawn([sys.executable, "-m", "tests.fake_twilio_server", "--port", str(self.fake_port),
                                 "--record", str(self.record), "--account-sid", self.sid, "--auth-token", self.token,
                                 "--seed", str(seed)], "fake-twilio.log", self.env())

    def start_server(self, **env: str) -> subprocess.Popen:
        self.starts += 1
        self.server = self._spawn([sys.executable, "-m", "dialer.cli", "serve"], f"serve-{self.starts:03d}.log",
                                  self.env(**env))
        return self.server

    def start_worker(self, **env: str) -> subprocess.Popen:
        self.starts += 1
        worker = self._spawn([sys.executable, "-m", "dialer.cli", "worker"], f"worker-{self.starts:03d}.log",
                             self.env(**env))
        self.workers.append(worker)
        return worker

    async def wait_listening(self, port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}: {self.log_tail(what)}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{what} not listening after {timeout} s: {self.log_tail(what)}")

    async def wait_health(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        assert self.server is not None
        await self.wait_listening(self.port, self.server, "serve", timeout)
        async with session.get(self.base + "/health") as resp:
            assert resp.status == 200, await resp.text()

    def log_tail(self, what: str, lines: int = 30) -> str:
        logs = sorted(self.tmp.glob("fake-twilio.log" if what == "fake" else f"{what}-*.log"))
        if not logs:
            return "(no log)"
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])

    @staticmethod
    def kill(proc: subprocess.Popen | None) -> None:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for proc in (self.server, *self.workers, self.fake):
            self.kill(proc)

    def fake_record(self) -> list[dict]:
        """The fake Twilio's record so far: its complete lines (the last may be half written)."""
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().split("\n")[:-1] if line.strip()]


@dataclass
class Chaos:
    """Kills the server at chosen moments and restarts it; sends requests until they are answered."""

    stack: Stack
    session: aiohttp.ClientSession
    api_key: str = ""
    started: float = field(default_factory=time.monotonic)
    kills: list[KillPoint] = field(default_factory=list)
    answers: dict[str, list[tuple[str, Answer]]] = field(default_factory=dict)  # key -> [(request, answer)]
    unanswered: int = 0  # sends that got no answer (and were retried)
    up: asyncio.Event = field(default_factory=asyncio.Event)
    running: dict[int, str] = field(default_factory=dict)
    _ids: int = 0

    async def kill_server(self, label: str) -> None:
        """kill -9 the server now, note the point, restart it on the same store, wait for /health."""
        self.up.clear()
        self.stack.kill(self.stack.server)
        self._note("serve", label)
        self.stack.start_server()
        await self.stack.wait_health(self.session)
        self.up.set()

    async def kill_after(self, delay: float, label: str) -> None:
        await asyncio.sleep(delay)  # a moment chosen by the seeded random draw, not a wait for a state
        await self.kill_server(label)

    def kill_worker(self, worker: subprocess.Popen, label: str) -> None:
        self.stack.kill(worker)
        self._note("worker", label)

    def _note(self, target: str, label: str) -> None:
        point = KillPoint(len(self.kills) + 1, label, time.monotonic() - self.started, target,
                          sorted(self.running.values()))
        self.kills.append(point)
        print(f"kill {point}", flush=True)

    async def request(self, method: str, path: str, body: Any = None, *, key: str | None = None,
                      idem: str | None = None, admin: bool = False) -> Answer | None:
        """One try: the answer, or None when the server gave none (killed, connection refused)."""
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if admin else {"x-api-key": key or self.api_key}
        if idem is not None:
            headers["Idempotency-Key"] = idem
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self.session.request(method, self.stack.base + path, data=data, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as resp:
                return Answer(resp.status, await resp.read(), time.time())
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            return None

    async def send(self, method: str, path: str, body: Any = None, *, idem: str | None = None,
                   label: str = "", **kw: Any) -> Answer:
        """Sent until answered: no answer (a kill) or a 5xx is retried with the same key once the server
        is up; so is a 409 saying the key's first request is still running. Every answer is kept."""
        self._ids += 1
        ident = self._ids
        self.running[ident] = label or f"{method} {path}"
        deadline = time.monotonic() + ANSWER_DEADLINE
        seen: list[str] = []
        try:
            while True:
                await self.up.wait()
                answer = await self.request(method, path, body, idem=idem, **kw)
                if answer is not None and idem is not None:
                    self.answers.setdefault(idem, []).append((f"{method} {path}", answer))
                if answer is not None and answer.status < 500 and not _key_in_use(answer):
                    return answer
                if answer is None:
                    self.unanswered += 1
                seen.append("no answer" if answer is None else f"{answer.status} {answer.body[:200]!r}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{label or path} (Idempotency-Key {idem}) unanswered after "
                                         f"{ANSWER_DEADLINE:.0f} s of retries; last answers: {seen[-5:]}")
                await asyncio.sleep(0.1)
        finally:
            del self.running[ident]


def _key_in_use(answer: Answer) -> bool:
    """A 409 refusing a key whose first request has not finished (not a batch's status)."""
    if answer.status != 409:
        return False
    try:
        data = answer.json().get("data") or {}
    except (ValueError, AttributeError):
        return False
    return isinstance(data, dict) and data.get("header") == "Idempotency-Key"
