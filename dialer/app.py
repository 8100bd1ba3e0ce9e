"""The API app factory: the composition root of the API process (resources opened in cleanup_ctx)."""

from __future__ import annotations

import logging
from typing import AsyncIterator

from aiohttp import web

from .appkeys import BATCHES, CLOCK, EVENTS, INGESTION, PHONES, SETTINGS, STORE, TENANCY
from .batches import Batches
from .call_events import BatchPolicies, CallEvents
from .clock import Clock, SystemClock
from .demo import seed_demo
from .enqueue import CallWriter
from .idempotency import Idempotency
from .ingestion import Ingestion
from .middlewares import errors
from .phones import PhoneNormaliser
from .routes import setup_routes
from .settings import Settings
from .store import open_store
from .tenancy import Tenancy

log = logging.getLogger("dialer.app")
DEMO = web.AppKey("demo", dict)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, clock = app[SETTINGS], app[CLOCK]
    store = await open_store(settings)
    phones = PhoneNormaliser(settings.default_region, settings.strict_numbers)
    tenancy = Tenancy(store, clock, phones)
    batches = Batches(store, clock)
    app[STORE] = store
    app[PHONES] = phones
    app[TENANCY] = tenancy
    app[BATCHES] = batches
    app[INGESTION] = Ingestion(settings, clock, tenancy, batches, CallWriter(store, clock), phones,
                               Idempotency(store, clock, settings.idempotency_ttl_seconds))
    app[EVENTS] = CallEvents(store, clock, BatchPolicies(store, clock), settings.lease_seconds)
    if settings.in_memory:
        app[DEMO] = await seed_demo(tenancy, settings)
    engine = None
    if settings.runs_embedded_dispatcher:
        from workers.engine import Engine, make_provider

        engine = Engine(store, clock, settings, make_provider(settings, clock))
        app[INGESTION].on_enqueued = engine.dispatcher.wake
        engine.start()
    yield
    if engine is not None:
        await engine.stop()
    await store.close()


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> web.Application:
    settings = settings or Settings.load()
    app = web.Application(middlewares=[errors], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app.cleanup_ctx.append(_store_ctx)
    setup_routes(app)
    return app
