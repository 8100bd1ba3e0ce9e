"""/openapi.json describes every route of every face from the shapes the handlers validate with, and
/docs renders it with assets the engine serves itself."""

from __future__ import annotations

import json
import re

import pytest
from aiohttp import web

from dialer.api.documented import ROUTE_DOC
from dialer.api.openapi import build_document, documented_routes, undocumented
from dialer.composition import build_app


async def _document(client) -> dict:
    resp = await client.get("/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    return await resp.json()


async def test_every_route_is_in_the_document(client, app):
    doc = await _document(client)
    assert doc["openapi"] == "3.1.0"
    routes = [(m, p) for m, p, _ in documented_routes(app) if not p.startswith("/console")]
    missing = [(m, p) for m, p in routes if m.lower() not in doc["paths"].get(p, {})]
    assert missing == [] and undocumented(app) == []
    assert len(routes) >= 27  # native (batches, agents, admin, health, metrics), ElevenLabs, Twilio, docs
    for path in ("/api/call/addCallsToBatch", "/v1/convai/batch-calling/submit", "/webhooks/twilio/status",
                 "/api/admin/workspaces/{workspaceId}/agents", "/metrics", "/health"):
        assert path in doc["paths"], path
    assert not any(p.startswith("/docs/assets") for p in doc["paths"])  # static files are not operations


def test_a_route_without_its_doc_is_reported(settings):
    app = build_app(settings)

    async def secret(request):
        return web.Response(text="?")

    app.router.add_get("/api/call/secret", secret)
    app.router.add_get("/console/page", secret)  # the console's pages are the console's
    assert ("GET", "/api/call/secret") in undocumented(app)
    assert ("GET", "/console/page") not in undocumented(app)
    assert "/api/call/secret" not in build_document(app)["paths"]


async def test_refs_resolve_and_security_is_declared(client):
    doc = await _document(client)
    schemas, schemes = doc["components"]["schemas"], doc["components"]["securitySchemes"]
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs and refs <= set(schemas)
    assert schemes["ApiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key",
                                 "description": schemes["ApiKey"]["description"]}
    assert schemes["XiApiKey"]["name"] == "xi-api-key" and schemes["BearerKey"]["scheme"] == "bearer"
    assert schemes["AdminToken"]["scheme"] == "bearer" and schemes["TwilioSignature"]["in"] == "header"
    ops = {(p, m): op for p, item in doc["paths"].items() for m, op in item.items()}
    assert ops[("/api/call/createBatch", "post")]["security"] == [{"ApiKey": []}, {"BearerKey": []}]
    assert ops[("/api/admin/workspaces", "get")]["security"] == [{"AdminToken": []}]
    assert ops[("/v1/convai/batch-calling/submit", "post")]["security"] == [{"XiApiKey": []}]
    assert ops[("/health", "get")]["security"] == []
    assert len({op["operationId"] for op in ops.values()}) == len(ops)
    links = [link for op in ops.values() for answer in op["responses"].values()
             for link in answer.get("links", {}).values()]
    assert len(links) >= 14 and {link["operationId"] for link in links} <= {op["operationId"] for op in ops.values()}


async def test_answers_are_documented_in_each_faces_shapes(client):
    doc = await _document(client)
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    add = paths["/api/call/addCallsToBatch"]["post"]
    assert set(add["responses"]) >= {"200", "207", "400", "403", "404", "409", "413"}
    envelope = schemas[add["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(envelope["required"]) == {"message", "status", "code", "errorMessage", "data"}
    assert [p["name"] for p in add["parameters"]] == ["Idempotency-Key"]
    record = schemas["AddCallsBody"]["properties"]["call_data"]["items"]
    assert record["required"] == ["phoneNumber"] and record["additionalProperties"] is True
    submit = paths["/v1/convai/batch-calling/submit"]["post"]["responses"]
    assert submit["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/HTTPValidationError")
    assert submit["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/BatchCall")
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert "application/xml" in paths["/webhooks/twilio/twiml"]["post"]["responses"]["200"]["content"]
    listing = {p["name"]: p for p in paths["/api/call/batches"]["get"]["parameters"]}
    assert listing["status"]["style"] == "form" and listing["status"]["explode"] is False
    assert listing["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}


RETRY_SAFE = {("post", "/api/call/createBatch"), ("post", "/api/call/addCallsToBatch"),
              ("post", "/api/call/batches/{batchId}/retry"), ("post", "/api/call/batches/{batchId}/csv"),
              ("post", "/v1/convai/batch-calling/submit"), ("post", "/v1/convai/batch-calling/{batchId}/retry"),
              ("post", "/api/admin/workspaces"), ("post", "/api/admin/workspaces/{workspaceId}/keys"),
              ("post", "/api/admin/workspaces/{workspaceId}/agents"), ("patch", "/api/admin/workspaces/{workspaceId}"),
              # partner webhooks: what creates (an endpoint, a secret, a test message)
              ("post", "/api/webhooks/endpoints"), ("post", "/api/webhooks/endpoints/{endpointId}/rotate-secret"),
              ("post", "/api/webhooks/endpoints/{endpointId}/test"),
              ("post", "/api/dnc")}  # the do-not-call list


async def test_each_write_safe_to_retry_documents_its_idempotency_key(client):
    doc = await _document(client)
    keyed = {(m, p) for p, item in doc["paths"].items() for m, op in item.items()
             if any(param["name"] == "Idempotency-Key" for param in op.get("parameters", []))}
    assert keyed == RETRY_SAFE | {("post", "/api/v1/agents/{agentId}/schedule/sequences")}  # + the enrollment face's own
    for method, path in RETRY_SAFE:
        op = doc["paths"][path][method]
        [header] = [p for p in op["parameters"] if p["in"] == "header"]
        assert header["schema"] == {"type": "string", "minLength": 1, "maxLength": 255} and not header["required"]
        assert "Idempotent-Replay" in op["responses"]["200"]["headers"], path
        assert "Idempotent-Replay" not in op["responses"]["409"].get("headers", {}), path  # a 409 is never kept
        assert "Idempotency-Key" in op["responses"]["422"]["description"], path
    submit = doc["paths"]["/v1/convai/batch-calling/submit"]["post"]["responses"]
    assert submit["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/HTTPValidationError")
    assert submit["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/VendorError")


async def test_the_document_tells_the_truth_about_what_createbatch_takes(api):
    """The bounds and the refusal of unknown fields come from the shape that validates the body."""
    doc = await _document(api.client)
    shape = doc["components"]["schemas"]["CreateBatchBody"]
    assert shape["additionalProperties"] is False and shape["required"] == ["name"]
    most = shape["properties"]["concurrencyLimit"]["maximum"]
    agent = str(api.agent["_id"])
    code, _ = await api.post("/api/call/createBatch", {"name": "x", "agentId": agent, "concurrencyLimit": most})
    assert code == 200
    code, refused = await api.post("/api/call/createBatch",
                                   {"name": "x", "agentId": agent, "concurrencyLimit": most + 1})
    assert code == 400 and "concurrencyLimit" in refused["errorMessage"]
    day = doc["components"]["schemas"]["WindowShape"]["properties"]["days"]["anyOf"][0]["items"]["pattern"]
    assert re.fullmatch(day, "Mon") and not re.fullmatch(day, "monday")  # day names in any case, as core reads them
    code, _ = await api.post("/api/call/createBatch",
                             {"name": "x", "agentId": agent, "callingWindow": {"days": ["Mon"]}})
    assert code == 200


@pytest.mark.parametrize("query, reason", [("limit=10.0", "limit must be an integer"),
                                           ("limit=0", "limit must be from 1 to 100"),
                                           ("status=running,asleep", "unknown status"),
                                           ("agentId=nope", "agentId must be an agent's id")])
async def test_listing_queries_are_refused_with_their_reason(api, query, reason):
    code, doc = await api.get(f"/api/call/batches?{query}")
    assert code == 400 and reason in doc["errorMessage"]


async def test_the_elevenlabs_listing_query_is_422_with_its_location(api):
    for query in ("limit=10.0", "limit=101", "last_doc=zz"):
        resp = await api.client.get(f"/v1/convai/batch-calling/workspace?{query}", headers={"xi-api-key": api.key})
        doc = await resp.json()
        assert resp.status == 422 and doc["detail"][0]["loc"][0] == "query", query


async def test_docs_page_uses_only_assets_the_engine_serves(client):
    resp = await client.get("/docs")
    html = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/assets/docs.js"} <= set(assets)
    assert "http" not in html
    for asset in assets:
        answer = await client.get(asset)
        assert answer.status == 200 and len(await answer.read()) > 100, asset
        assert answer.content_type in ("application/javascript", "text/javascript", "text/css"), asset
    init = await (await client.get("/docs/assets/docs.js")).text()
    assert '"/openapi.json"' in init and "validatorUrl: null" in init
    assert (await client.get("/docs/assets/nope.js")).status == 404


def test_shapes_are_attached_not_wrapped():
    """@documented leaves a handler as it is: the faces' own wrappers keep the RouteDoc."""
    from dialer.api.faces import elevenlabs
    from dialer.api.handlers import batches

    assert getattr(elevenlabs.submit, ROUTE_DOC).body.__name__ == "SubmitBody"
    assert getattr(batches.create_batch, ROUTE_DOC).body.__name__ == "CreateBatchBody"
