"""Reading a JSON body with a clear 400, for a handler whose body has no declared shape yet. A documented
route reads its body with dialer.api.documented.request_body instead, which also validates it against
the shape the document shows; this stays for handlers written before that (on other branches)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dialer.services.bodies import parse_json


async def json_body(request: web.Request) -> Any:
    return parse_json(await request.read())
