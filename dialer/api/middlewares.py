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

VENDOR_PREFIX = "/api/v1/"  # the enrollment face
ELEVENLABS_ROOT = "/v1/"  # the ElevenLabs face (its batch calling, and its other paths we do not serve)
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


def _in_shape(request: web.Request, refused: Refused) -> web.Response:
    """A refusal in the shape of the face the path belongs to: the enrollment face's, the ElevenLabs face's,
    else our envelope."""
    if request.path.startswith(VENDOR_PREFIX):
        return enrollment.error_response(refused.code, refused.error)
    if request.path.startswith(ELEVENLABS_ROOT):
        return elevenlabs.refusal(refused)
    return fail(refused)


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
        response = _in_shape(request, Refused(503, "Service Unavailable", f"{exc}; retry the request"))
        response.headers["Retry-After"] = "1"
    except web.RequestPayloadError as exc:
        # A body its Content-Encoding does not decode (aiohttp decodes gzip and deflate as it reads), or one cut
        # short: the client's mistake, said as such.
        cause = exc.__cause__ or exc
        log.info("unreadable request body", extra={"requestId": request_id, "path": request.path,
                                                   "error": type(cause).__name__})
        encoding = request.headers.get("Content-Encoding")
        error = (f"the request body is not valid {encoding} data, as its Content-Encoding header says it is"
                 if encoding else "the request body could not be read to its end")
        response = _in_shape(request, Refused(400, "Bad Request", error))
        _close_unread(request, response)
    except ConnectionResetError:
        # The client went away before its body was read whole: nothing was done, and nobody is left to answer.
        log.info("client disconnected before its body was read", extra={"requestId": request_id, "path": request.path})
        response = _in_shape(request, Refused(400, "Bad Request", "the request body ended before its Content-Length"))
        _close_unread(request, response)
    except web.HTTPException as exc:
        if exc.status < 400 or not (request.path.startswith("/api/") or request.path.startswith(ELEVENLABS_ROOT)):
            raise
        reason = _REASONS.get(exc.status, exc.reason)
        if request.path.startswith("/api/") and not request.path.startswith(VENDOR_PREFIX):
            detail = exc.text if exc.status != 413 else (
                f"request body is larger than the limit of {request.app[SETTINGS].max_body_bytes} bytes; split it")
            response = envelope(exc.status, reason, error=detail or reason, status=False)
        else:  # the vendor faces answer what aiohttp refuses (404, 405, 413) in their vendor's shapes
            response = _in_shape(request, Refused(exc.status, reason, f"{reason}."))
        if "Allow" in exc.headers:  # a 405 says which methods the path takes (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        log.exception("unhandled error", extra={"requestId": request_id, "path": request.path})
        response = envelope(500, "Internal Server Error",
                            {"requestId": request_id}, error=f"unexpected error; request id {request_id}", status=False)
    response.headers["X-Request-Id"] = request_id
    if "Content-Encoding" in request.headers and request.body_exists and not request.content.is_eof():
        _close_unread(request, response)  # answered without reading its compressed body (a 403, say)
    return response


def _close_unread(request: web.Request, response: web.StreamResponse) -> None:
    """Answer, then close the connection rather than read the rest of the body: aiohttp would decode what is left
    to reuse the connection, and log a body that does not decode as an unhandled error of its own."""
    request.content.feed_eof()
    response.force_close()
