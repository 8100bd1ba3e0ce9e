"""Middlewares: request ids, and every /api/ failure turned into the envelope (never a bare 500)."""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from dialer.api.appkeys import REQUEST_ID, SETTINGS
from dialer.api.envelope import envelope, fail
from dialer.services.errors import Refused

log = logging.getLogger("dialer.http")

_REASONS = {404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large"}


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except Refused as err:
        response = fail(err)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        reason = _REASONS.get(exc.status, exc.reason)
        detail = exc.text if exc.status != 413 else (
            f"request body is larger than the limit of {request.app[SETTINGS].max_body_bytes} bytes; split it")
        response = envelope(exc.status, reason, error=detail or reason, status=False)
    except Exception:
        log.exception("unhandled error", extra={"requestId": request_id, "path": request.path})
        response = envelope(500, "Internal Server Error",
                            {"requestId": request_id}, error=f"unexpected error; request id {request_id}", status=False)
    response.headers["X-Request-Id"] = request_id
    return response
