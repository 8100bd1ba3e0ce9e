"""Every answer of the engine, whoever makes it (a handler, the envelope of a refusal, a static file, aiohttp's
own 404), forbids MIME sniffing, framing and referrers, and carries a Content-Security-Policy: the console's
own, the /docs page's (Swagger UI from this origin only), or one that allows nothing.

Found by an exploratory run: only the console's files carried these; /docs (an HTML page on the same origin
as the console, whose tab keeps the API key in sessionStorage) and every API answer carried none."""

from __future__ import annotations

import pytest


def policy(header: str) -> dict[str, str]:
    return {part.split(" ", 1)[0]: part.partition(" ")[2] for part in (p.strip() for p in header.split(";")) if part}


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/agents"), ("GET", "/api/call/batches/0123456789abcdef01234567"), ("POST", "/api/call/createBatch"),
    ("GET", "/health"), ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/no/such/page"),
    ("GET", "/v1/convai/batch-calling/workspace"), ("GET", "/docs"), ("GET", "/docs/assets/docs.js"),
    ("GET", "/console"), ("GET", "/console/static/app.js"), ("GET", "/console/static/nope.js")])
async def test_every_answer_forbids_sniffing_framing_and_referrers(client, method, path):
    resp = await client.request(method, path, headers={"x-api-key": "not-a-key"})
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    csp = policy(resp.headers["Content-Security-Policy"])
    assert csp["frame-ancestors"] == "'none'" and csp["default-src"] == "'none'", csp
    assert "unsafe-eval" not in resp.headers["Content-Security-Policy"]
    if path.startswith("/docs") or path.startswith("/console"):
        assert resp.headers.get("Cache-Control") != "no-store"  # the page and its files are cached, revalidated
    else:
        assert resp.headers["Cache-Control"] == "no-store"  # numbers, variables, keys, secrets: in no cache
    if resp.status == 200 and (path.startswith("/docs") or path.startswith("/console")):
        assert csp["script-src"] == "'self'" and csp["connect-src"] == "'self'", csp
    else:
        assert "script-src" not in csp  # a JSON or text answer (a 404 too) opened as a page runs nothing


async def test_the_console_keeps_its_own_stricter_policy(client):
    resp = await client.get("/console")
    csp = policy(resp.headers["Content-Security-Policy"])
    assert csp["style-src"] == "'self'"  # no inline styles, unlike Swagger UI's /docs
    assert resp.headers.getall("Content-Security-Policy") == [resp.headers["Content-Security-Policy"]]
