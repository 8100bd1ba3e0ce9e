"""`dialer worker`: a dispatcher process over the configured MongoDB, until SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from dialer.composition import build_engine, open_services
from dialer.settings import Settings

log = logging.getLogger("workers.main")


async def run_worker(settings: Settings) -> int:
    if settings.in_memory:
        log.error("a separate dispatcher needs MONGODB_URI: the in-memory store lives inside `dialer serve`, "
                  "which runs its own dispatcher")
        return 2
    services = await open_services(settings)
    try:
        engine = build_engine(services)
    except ValueError as exc:
        log.error(str(exc))
        await services.close()
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine.start()
    await stop.wait()
    log.info("stopping: no new claims; waiting for work in progress")
    await engine.stop()
    await services.close()
    return 0
