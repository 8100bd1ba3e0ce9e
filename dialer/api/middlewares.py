"""Middlewares: request ids, and every /api/ failure turned into the envelope (never a bare 500)."""

from __future__ import annotations

import logging
import secrets
import time

from aiohttp import web

from dialer.api.appkeys import METRICS, REQUEST_ID, SETTINGS
from dialer.api.envelope import envelope, fail
from dialer.api.faces import elevenlabs, enrollment
from dialer.ports import StoreUnavailable
from dialer.services.errors import Refused

log = logging.getLogger("dialer.http")

VENDOR_PREFIX = "/api/v1/"
_REASONS = {404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large"}


@web.middleware
async def measured(request: web.Request, handler) -> web.StreamResponse:
    """Requests by route (its pattern, not its URL: batch ids would make a series each), method, status."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "(unmatched)"
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.http_requests.labels(name, request.method, str(status)).inc()
            metrics.http_seconds.labels(name).observe(time.perf_counter() - started)


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except Refused as err:
        response = fail(err)
    except StoreUnavailable as exc:  # the store failed (busy, disk full, unreachable): retry later, never a 500
        log.error("the store failed", extra={"requestId": request_id, "path": request.path, "error": str(exc)})
        refused = Refused(503, "Service Unavailable", f"{exc}; retry the request")
        if request.path.startswith(VENDOR_PREFIX):
            response = enrollment.error_response(503, refused.error)
        elif request.path.startswith(elevenlabs.PREFIX):
            response = elevenlabs.refusal(refused)
        else:
            response = fail(refused)
        response.headers["Retry-After"] = "1"
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        reason = _REASONS.get(exc.status, exc.reason)
        if request.path.startswith(VENDOR_PREFIX):  # the enrollment face answers in its vendor's shape
            response = enrollment.error_response(exc.status, f"{reason}.")
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            response.headers["X-Request-Id"] = request_id
            return response
        detail = exc.text if exc.status != 413 else (
            f"request body is larger than the limit of {request.app[SETTINGS].max_body_bytes} bytes; split it")
        response = envelope(exc.status, reason, error=detail or reason, status=False)
        if "Allow" in exc.headers:  # a 405 says which methods the path takes (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        log.exception("unhandled error", extra={"requestId": request_id, "path": request.path})
        response = envelope(500, "Internal Server Error",
                            {"requestId": request_id}, error=f"unexpected error; request id {request_id}", status=False)
    response.headers["X-Request-Id"] = request_id
    return response
