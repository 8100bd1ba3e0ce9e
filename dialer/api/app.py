"""The API app factory: routes, middlewares, settings. The services it serves are put in place by the
composition root (dialer/composition.py) through `lifespan`, a cleanup context run inside the loop."""

from __future__ import annotations

from typing import AsyncIterator, Callable

from aiohttp import web

from dialer.api import headers
from dialer.api.appkeys import SETTINGS
from dialer.api.middlewares import errors, measured
from dialer.api.routes import setup_routes
from dialer.settings import Settings


def create_app(settings: Settings, lifespan: Callable[[web.Application], AsyncIterator[None]]) -> web.Application:
    # aiohttp answers a request line or header beyond its limits itself, in plain text, before any
    # middleware: the limits are raised deliberately (settings.max_header_bytes) so that what partners
    # send (long keys, long query strings) reaches the envelope.
    app = web.Application(middlewares=[measured, errors], client_max_size=settings.max_body_bytes,
                          handler_args={"max_line_size": settings.max_header_bytes,
                                        "max_field_size": settings.max_header_bytes})
    app[SETTINGS] = settings
    app.cleanup_ctx.append(lifespan)
    setup_routes(app)
    headers.setup(app)
    return app
