"""The operators' web console at /console: a page and its static files, shipped inside the package.

The console is plain HTML, CSS and JavaScript modules (`static/`, package data: no build step, nothing
loaded from elsewhere at run time). It signs in with a workspace API key kept in the browser's session
storage and calls the same `/api/...` routes as any client, with `x-api-key`. This module only serves
the files: the names are read once from the package at start-up, so a request can only ever name one
of them (no path is built from a URL), and every answer carries a Content-Security-Policy that allows
nothing but this origin.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated (Last-Modified): a new version is picked up at once
}
FILES_KEY = web.AppKey("console_files", dict)


def setup(app: web.Application) -> None:
    app[FILES_KEY] = {p.name: p for p in STATIC.iterdir() if p.is_file() and p.suffix in CONTENT_TYPES}
    app.router.add_get("/console", page)
    app.router.add_get("/console/", page)
    app.router.add_get("/console/static/{name}", asset)


def _file(path: Path) -> web.FileResponse:
    return web.FileResponse(path, headers={**HEADERS, "Content-Type": CONTENT_TYPES[path.suffix]})


async def page(request: web.Request) -> web.FileResponse:
    return _file(request.app[FILES_KEY]["index.html"])


async def asset(request: web.Request) -> web.FileResponse:
    path = request.app[FILES_KEY].get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound(text="no such console file")
    return _file(path)
