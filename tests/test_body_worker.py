"""The large-body parser's worker process (dialer/services/bodies.py) lives and dies with its server: a
`dialer serve` killed with kill -9 runs no shutdown, and its worker must not live on, orphaned (each crash
test's kill left one behind, ~50 MB each, until the machine was full of them)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from tests.crash_harness import Stack


def children(pid: int) -> set[int]:
    """Live processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_killed_servers_body_parser_does_not_outlive_it(tmp_path):
    stack = Stack(tmp_path, {"DIALER_DATA_DIR": str(tmp_path / "data")})
    server = stack.start_server(DIALER_PROVIDER="simulator")
    try:
        await stack.wait_listening(stack.port, server, "serve")
        deadline = time.monotonic() + 30
        while not (workers := children(server.pid)) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the parser's worker starts with the server, in the background
        assert workers, "the server started no body-parser worker"
    finally:
        Stack.kill(server)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:  # do not leave them to the next run either
        os.kill(pid, 9)
    assert not left, f"processes of the killed server still running: {left}"
