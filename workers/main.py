"""`dialer worker`: a dispatcher process (the composition root of the worker side)."""

from __future__ import annotations

import asyncio
import logging
import signal

from dialer.core.clock import SystemClock
from dialer.settings import Settings
from dialer.store import open_store

from workers.engine import Engine, make_provider

log = logging.getLogger("workers.main")


async def run_worker(settings: Settings) -> int:
    if settings.in_memory:
        log.error("a separate dispatcher needs MONGODB_URI: the in-memory store lives inside `dialer serve`, "
                  "which runs its own dispatcher")
        return 2
    clock = SystemClock()
    store = await open_store(settings)
    try:
        engine = Engine(store, clock, settings, make_provider(settings, clock))
    except ValueError as exc:
        log.error(str(exc))
        await store.close()
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine.start()
    await stop.wait()
    log.info("stopping: no new claims; waiting for work in progress")
    await engine.stop()
    await store.close()
    return 0
