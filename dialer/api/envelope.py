"""The response envelope every /api/ route answers with, and the error type handlers raise."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


class ApiError(Exception):
    """A client-visible failure: HTTP status, a short message, and optional details for `data`."""

    def __init__(self, code: int, message: str, error: str | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.error = error or message
        self.data = data


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


def fail(err: ApiError) -> web.Response:
    return envelope(err.code, err.message, err.data, error=err.error, status=False)
