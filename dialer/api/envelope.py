"""The response envelope every /api/ route answers with, and the error type handlers raise."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from dialer.services.errors import Refused


class ApiError(Refused):
    """A client-visible failure raised by a handler: HTTP status, a short message, details for `data`.
    (Use cases raise its base, Refused; both become the envelope.)"""


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def envelope(code: int, message: str, data: Any = None, error: str = "", status: bool | None = None) -> web.Response:
    body = {
        "message": message,
        "status": (200 <= code < 300 and code != 207) if status is None else status,
        "code": code,
        "errorMessage": error,
        "data": data if data is not None else {},
    }
    return web.json_response(body, status=code, dumps=_dumps)


def ok(data: Any, message: str = "OK", code: int = 200) -> web.Response:
    return envelope(code, message, data)


def fail(err: Refused) -> web.Response:
    return envelope(err.code, err.message, err.data, error=err.error, status=False)
