"""The console's files: /console and its static files served from the package, with a strict policy,
nothing else reachable through their route, and all of them declared as package data."""

from __future__ import annotations

import configparser
import fnmatch
import re
from pathlib import Path

import pytest

from dialer.api.console import STATIC

ROOT = Path(__file__).resolve().parent.parent


async def test_the_console_page_and_its_files_are_served_with_a_strict_policy(client):
    resp = await client.get("/console")
    assert resp.status == 200 and resp.content_type == "text/html"
    html = await resp.text()
    assert '<html lang="en">' in html
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert (await client.get("/console/")).status == 200
    for src in re.findall(r'(?:src|href)="(/console/static/[^"]+)"', html):
        asset = await client.get(src)
        assert asset.status == 200, src
    js = await client.get("/console/static/app.js")
    assert js.content_type == "text/javascript" and "Content-Security-Policy" in js.headers
    # Every module the page imports is served (a missing file would break the page at load).
    for path in sorted(STATIC.glob("*.js")):
        for name in re.findall(r'from "\./([\w.-]+)"', path.read_text()):
            assert (await client.get(f"/console/static/{name}")).status == 200, (path.name, name)


@pytest.mark.parametrize("path", ["/console/static/nope.js", "/console/static/..%2F__init__.py",
                                  "/console/static/%2e%2e%2f%2e%2e%2fsettings.py", "/console/static/"])
async def test_nothing_but_the_consoles_own_files_is_served(client, path):
    resp = await client.get(path)
    assert resp.status == 404


def test_every_console_file_is_package_data():
    """An installed package (not only this checkout) must carry the console's files."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = cfg["options.package_data"]["dialer.api.console"].split()
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files), (patterns, files)
    assert all(p.parent == STATIC for p in STATIC.rglob("*") if p.is_file()), "the console serves one flat folder"
    html = (STATIC / "index.html").read_text()
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere at run time


def test_the_webhooks_page_offers_every_event_type():
    from dialer.core.webhook_events import EVENT_TYPES

    source = (STATIC / "webhooks.js").read_text()
    listed = re.search(r"export const EVENT_TYPES = \[(.*?)\];", source, re.S).group(1)
    assert re.findall(r'"([\w.]+)"', listed) == list(EVENT_TYPES)
