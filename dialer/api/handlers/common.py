"""Small helpers shared by handlers: reading JSON bodies with clear 400s."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dialer.services.bodies import parse_json


async def json_body(request: web.Request) -> Any:
    return parse_json(await request.read())
