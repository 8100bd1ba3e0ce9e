"""The response envelope every /api/ route answers with, and the error type handlers raise."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from dialer.services.errors import Refused


class ApiError(Refused):
    """A client-visible failure raised by a handler: HTTP status, a short message, details for `data`.
    (Use cases raise its base, Refused; both become the envelope.)"""


def envelope(code: int, message: str, data: Any = None, error: str = "", status: bool | None = None) -> web.Response:
    body = {
        "message": message,
        "status": (200 <= code < 300 and code != 207) if status is None else status,
        "code": code,
        "errorMessage": error,
        "data": data if data is not None else {},
    }
    # Bytes straight from orjson: a 100,000-call answer is 2.5 MB, not worth a str round trip.
    return web.Response(body=orjson.dumps(body), status=code, content_type="application/json", charset="utf-8")


def ok(data: Any, message: str = "OK", code: int = 200) -> web.Response:
    return envelope(code, message, data)


def fail(err: Refused) -> web.Response:
    return envelope(err.code, err.message, err.data, error=err.error, status=False)
