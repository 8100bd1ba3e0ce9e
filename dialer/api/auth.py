"""Who is calling: workspace API keys (x-api-key or Authorization: Bearer) and the admin token."""

from __future__ import annotations

import hmac

from aiohttp import web

from dialer.api.appkeys import SETTINGS, TENANCY
from dialer.api.envelope import ApiError
from dialer.services.tenancy import Principal


def presented_key(request: web.Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def require_workspace(request: web.Request) -> Principal:
    key = presented_key(request)
    if key is None:
        raise ApiError(403, "Forbidden", "missing API key: send x-api-key or Authorization: Bearer <key>")
    principal = await request.app[TENANCY].authenticate(key)
    if principal is None:
        raise ApiError(403, "Forbidden", "invalid API key")
    return principal


def require_admin(request: web.Request) -> None:
    token = request.app[SETTINGS].admin_token
    if not token:
        raise ApiError(403, "Forbidden", "admin endpoints are disabled (DIALER_ADMIN_TOKEN is not set)")
    presented = presented_key(request) or ""
    # Header bytes beyond ASCII arrive surrogate-escaped: compare them as the bytes they were.
    if not hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), token.encode()):
        raise ApiError(403, "Forbidden", "invalid admin token")
