"""`dialer worker`: a dispatcher process (and a partner webhook sender) over the configured store (the SQLite file `dialer serve` uses,
or MongoDB), until SIGTERM / SIGINT, with its own /metrics on DIALER_WORKER_METRICS_PORT."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from dialer.composition import build_engine, build_sender, open_services, open_wakeups
from dialer.metrics import CONTENT_TYPE
from dialer.ports import StoreOpenFailed
from dialer.settings import Settings

log = logging.getLogger("workers.main")


async def run_worker(settings: Settings) -> int:
    if settings.private:
        log.error("a separate dispatcher needs a shared store (the SQLite file or MongoDB): DIALER_DATA_DIR=:memory: "
                  "lives inside `dialer serve`, which runs its own dispatcher")
        return 2
    try:
        services = await open_services(settings)
    except StoreOpenFailed as exc:
        log.error(f"cannot open the store: {exc}")
        return 2
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
    runner = None
    if settings.worker_metrics_port:
        runner = web.AppRunner(metrics_app(services), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.worker_metrics_port).start()
        log.info(f"metrics on http://{settings.host}:{settings.worker_metrics_port}/metrics")
    engine.start()
    await open_wakeups(services, engine)  # calls ended by Twilio's callbacks to `dialer serve` wake it at once
    sender = build_sender(services, engine.name)  # partner webhooks are delivered by every worker too
    await sender.start()
    await stop.wait()
    log.info("stopping: no new claims; waiting for work in progress")
    await sender.stop()
    await engine.stop()
    if runner is not None:
        await runner.cleanup()
    await services.close()
    return 0


def metrics_app(services) -> web.Application:
    """A dispatcher's own /metrics (its process's registry: placements, outcomes, slots...)."""

    async def metrics(request: web.Request) -> web.Response:
        await services.metrics.refresh(services.repos, services.clock.now())
        return web.Response(body=services.metrics.text(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
