"""/openapi.json (OpenAPI 3.1) and /docs (Swagger UI, shipped in the package), built from the routes.

How a route gets documented: its handler carries a RouteDoc, attached with `@documented(...)` next to
it (dialer/api/documented.py): summary, tags, security schemes, the shapes it reads (`body`, `query`,
`headers`, `path` descriptions) and the replies it answers (`{status: Reply(model, description)}`).
`request_body()` / `request_query()` validate with those very shapes, so the document cannot drift
from the validation. A new face declares its models and decorates its handlers the same way; nothing
here changes.

The builder walks `app.router`: each (method, path) whose handler has a RouteDoc becomes an operation
(HEAD beside GET and static routes are left out). Every model named by a RouteDoc is rendered by
pydantic into `components.schemas` (request shapes in validation mode, replies in serialization mode);
the schemes into `components.securitySchemes`. A route without a RouteDoc is simply missing, which
tests/test_openapi.py turns into a failure. The document is built at its first request and kept.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Iterator

import orjson
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from dialer.api.documented import PUBLIC, Reply, RouteDoc, documented, route_doc

REF = "#/components/schemas/{model}"
DOCUMENT = web.AppKey("openapi_document", dict)  # a holder: {"json": bytes} once built
ASSETS = "docs_assets"  # package data of dialer.api: Swagger UI (from npm's swagger-ui-dist) and our page
DESCRIPTION = """A self-hosted outbound calling engine.

Our own routes (`/api/...` but `/api/v1/`) answer every request, errors included, in the envelope
`{message, status, code, errorMessage, data}` with the HTTP status equal to `code`; a workspace key is
sent as `x-api-key` or `Authorization: Bearer <key>`. The contact-enrollment face
(`/api/v1/agents/{agentId}/schedule/sequences`) answers in its vendor's shapes (`202 {batchId, total,
accepted, rejected}`, errors `{statusCode, error, message}`), with the same keys. The ElevenLabs
batch-calling face (`/v1/convai/batch-calling/...`) answers in that vendor's shapes, with its
`xi-api-key`. Twilio's webhooks take Twilio's signed forms."""


class _Schemas(GenerateJsonSchema):
    """pydantic's JSON Schema, without a title on every field, nor a null default on a field that
    refuses null (an absent optional field, such as PATCH's, is simply not required)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: Any) -> dict:
        json_schema = super().default_schema(schema)
        if schema.get("default", 0) is None and schema["schema"].get("type") != "nullable":
            json_schema.pop("default", None)
        return json_schema


def documented_routes(app: web.Application) -> Iterator[tuple[str, str, Any]]:
    """(method, path, handler) of every route the document should hold."""
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None or isinstance(resource, web.StaticResource):
            continue
        yield route.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", resource.canonical), route.handler


def undocumented(app: web.Application) -> list[tuple[str, str]]:
    """Routes the document leaves out for want of a RouteDoc (the console's pages are its own)."""
    return [(method, path) for method, path, handler in documented_routes(app)
            if route_doc(handler) is None and not path.startswith("/console")]


def build_document(app: web.Application) -> dict:
    """The OpenAPI document of the app's documented routes."""
    routes = [(method, path, handler, route_doc(handler)) for method, path, handler in documented_routes(app)]
    routes = [(m, p, h, d) for m, p, h, d in routes if d is not None]
    wanted: dict[tuple[type[BaseModel], str], None] = {}
    for *_, doc in routes:
        if doc.body is not None:
            wanted[(doc.body, "validation")] = None
        for reply in doc.responses.values():
            if reply.model is not None:
                wanted[(reply.model, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template=REF, schema_generator=_Schemas)
    schemas = top.get("$defs", {})
    parameters = {model: _parameters(model, schemas) for *_, doc in routes
                  for model in (doc.query, doc.headers) if model is not None}
    paths: dict[str, dict] = {}
    operation_ids: set[str] = set()
    schemes: dict[str, Any] = {}
    for method, path, handler, doc in routes:
        for scheme in doc.security:
            schemes[scheme.name] = dict(scheme.spec)
        operation = _operation(method, path, handler, doc, refs, parameters, operation_ids)
        paths.setdefault(path, {})[method.lower()] = operation
    first: dict[str, tuple[bool, int]] = {}  # our own routes' tags first, then in the router's order
    for index, (_, path, _, doc) in enumerate(routes):
        for tag in doc.tags:
            first.setdefault(tag, (not path.startswith("/api/"), index))
    tags = sorted(first, key=first.__getitem__)
    return {
        "openapi": "3.1.0",
        "info": {"title": "dialer", "version": _version(), "description": DESCRIPTION},
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": schemes},
    }


def _parameters(model: type[BaseModel], schemas: dict) -> list[tuple[str, bool, dict]]:
    """A query or header model as parameters (name, required, schema): inlined, not a schema of its own."""
    rendered = model.model_json_schema(ref_template=REF, schema_generator=_Schemas)
    schemas.update(rendered.pop("$defs", {}))
    required = set(rendered.get("required", []))
    return [(name, name in required, prop) for name, prop in rendered.get("properties", {}).items()]


def _operation(method: str, path: str, handler: Any, doc: RouteDoc, refs: dict, parameters: dict,
               used: set[str]) -> dict:
    operation_id = doc.operation_id or f"{handler.__module__.rsplit('.', 1)[-1]}_{handler.__name__}"
    if operation_id in used:  # one handler on two paths (/health and /api/health)
        operation_id += "_" + re.sub(r"\W+", "_", path).strip("_")
    used.add(operation_id)
    operation: dict[str, Any] = {"operationId": operation_id, "summary": doc.summary, "tags": list(doc.tags)}
    if doc.description:
        operation["description"] = doc.description
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"},
               **({"description": doc.path[name]} if name in doc.path else {})}
              for name in re.findall(r"\{(\w+)\}", path)]
    for where, model in (("query", doc.query), ("header", doc.headers)):
        for name, required, prop in parameters.get(model, []):
            schema = {key: value for key, value in prop.items() if key != "description"}
            param = {"name": name, "in": where, "required": required, "schema": schema}
            if prop.get("description"):
                param["description"] = prop["description"]
            if where == "query" and schema.get("type") == "array":
                param.update(style="form", explode=False)  # status=queued,completed
            params.append(param)
    if params:
        operation["parameters"] = params
    if doc.body is not None:
        operation["requestBody"] = {"required": doc.body_required,
                                    "content": {doc.body_media_type: {"schema": refs[(doc.body, "validation")]}}}
    operation["responses"] = {str(code): _response(reply, refs) for code, reply in sorted(doc.responses.items())}
    operation["security"] = [{scheme.name: []} for scheme in doc.security]
    return operation


def _response(reply: Reply, refs: dict) -> dict:
    answer: dict[str, Any] = {"description": reply.description}
    if reply.model is not None:
        answer["content"] = {reply.media_type: {"schema": refs[(reply.model, "serialization")]}}
    elif reply.media_type != "application/json":
        answer["content"] = {reply.media_type: {"schema": {"type": "string"}}}
    if reply.headers:
        answer["headers"] = {name: dict(spec) for name, spec in reply.headers.items()}
    if reply.links:
        answer["links"] = {name: dict(link) for name, link in reply.links.items()}
    return answer


def _version() -> str:
    try:
        return version("dialer")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"


def _asset(name: str) -> bytes:
    return resources.files("dialer.api").joinpath(ASSETS, name).read_bytes()


@documented("This document (OpenAPI 3.1)", tags=("docs",), security=PUBLIC,
            responses={200: Reply(None, "the OpenAPI document", media_type="application/json")})
async def openapi_json(request: web.Request) -> web.Response:
    holder = request.app[DOCUMENT]
    if "json" not in holder:
        holder["json"] = orjson.dumps(build_document(request.app))
    return web.Response(body=holder["json"], content_type="application/json")


@documented("The document, rendered (Swagger UI)", tags=("docs",), security=PUBLIC,
            responses={200: Reply(None, "an HTML page; its assets are served by the engine itself",
                                  media_type="text/html")})
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8")


def setup(app: web.Application) -> None:
    """Serve /openapi.json, /docs and its assets (the document is built from the router at its first request)."""
    app[DOCUMENT] = {}
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)
    app.router.add_static("/docs/assets", str(resources.files("dialer.api").joinpath(ASSETS)))
