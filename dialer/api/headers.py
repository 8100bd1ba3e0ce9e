"""The headers every answer of the engine carries, whoever made it (a handler, a middleware's envelope, a static
file, aiohttp's own 404): no MIME sniffing, no framing, no referrer, a Content-Security-Policy, and (but for the
console's and /docs' files, revalidated) no caching. Set on
`on_response_prepare`, so no route can forget them.

The console's pages keep the policy they set themselves (dialer/api/console); the /docs page (Swagger UI, from
this origin only) gets one that lets it run and style itself and reach nothing else; every other answer (JSON,
text, TwiML) gets a policy that allows nothing, so a payload read as a page by mistake can run nothing.
"""

from __future__ import annotations

from aiohttp import web

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # and frame-ancestors 'none' below, for browsers that read only one of them
    "Referrer-Policy": "no-referrer",
}
DOCS_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
NOTHING = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


async def secure(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in COMMON.items():
        response.headers.setdefault(name, value)
    if not (request.path.startswith("/console") or request.path.startswith("/docs")):
        # Answers carry callees' numbers and variables, keys and signing secrets: no cache keeps them.
        response.headers.setdefault("Cache-Control", "no-store")
    if "Content-Security-Policy" not in response.headers:
        docs = request.path == "/docs" or request.path.startswith("/docs/")
        response.headers["Content-Security-Policy"] = DOCS_POLICY if docs else NOTHING


def setup(app: web.Application) -> None:
    app.on_response_prepare.append(secure)
