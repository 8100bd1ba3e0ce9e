"""The API app factory: the composition root of the API process (resources opened in cleanup_ctx)."""

from __future__ import annotations

import logging
from typing import AsyncIterator

from aiohttp import web

from dialer.api.appkeys import BATCHES, CLOCK, EVENTS, INGESTION, PHONES, SETTINGS, STORE, TENANCY
from dialer.services.batches import Batches
from dialer.services.call_events import BatchPolicies, CallEvents
from dialer.core.clock import Clock, SystemClock
from dialer.demo import seed_demo
from dialer.services.enqueue import CallWriter
from dialer.services.idempotency import Idempotency
from dialer.services.ingestion import Ingestion
from dialer.api.middlewares import errors
from dialer.core.phones import PhoneNormaliser
from dialer.api.routes import setup_routes
from dialer.settings import Settings
from dialer.store import open_store
from dialer.services.tenancy import Tenancy

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
