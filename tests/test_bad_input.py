"""Bad input a new user's probe turned into wrong answers: each gets a clear 4xx, never a 500 or silent loss."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web
import pytest

from dialer.api.appkeys import TENANCY
from dialer.composition import build_app
from tests.conftest import make_api


async def raw_request(client, head: bytes, body: bytes = b"") -> tuple[int, bytes, bytes]:
    """Send bytes as they are (headers that are not UTF-8 included); (status, headers, body)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head_out, _, body_out = data.partition(b"\r\n\r\n")
    return int(head_out.split(b" ", 2)[1]), head_out, body_out


@pytest.mark.parametrize("number", ["555-0100", "+1 555 0100", "2125550", "+44 20 7946"])
async def test_incomplete_numbers_are_rejected_not_shortened(api, number):
    batch = await api.create_batch()
    code, doc = await api.add_calls(batch, [{"phoneNumber": number}])
    assert code == 400 and "impossible" in doc["data"]["errors"][0]["reason"]
    assert await api.all_calls(batch) == []


async def test_a_rejected_number_is_echoed_cut_short(api):
    """Three records of a million-digit number made a 3 MB error body: each echoed the number whole."""
    batch = await api.create_batch()
    number = "+1" + "2" * 100_000
    code, doc = await api.add_calls(batch, [{"phoneNumber": number}] * 3)
    assert code == 400 and [e["phoneNumber"] for e in doc["data"]["errors"]] == [number[:64]] * 3
    assert "longer than" in doc["data"]["errors"][0]["reason"]


@pytest.mark.parametrize("header", [b"x-api-key: cl\xe9", b"Authorization: Bearer cl\xe9\xff"])
async def test_a_key_that_is_not_utf8_is_403(api, header):
    batch = await api.create_batch()
    body = orjson.dumps({"batchId": batch, "call_data": [{"phoneNumber": "+12125550100"}]})
    status, _, out = await raw_request(api.client, b"POST /api/call/addCallsToBatch HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Type: application/json\r\n" + header, body)
    doc = orjson.loads(out)
    assert status == 403 and doc["code"] == 403 and doc["errorMessage"] == "invalid API key"


async def test_an_idempotency_key_that_is_not_ascii_is_400(api):
    batch = await api.create_batch()
    body = orjson.dumps({"batchId": batch, "call_data": [{"phoneNumber": "+12125550100"}]})
    status, _, out = await raw_request(api.client, b"POST /api/call/addCallsToBatch HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Type: application/json\r\nx-api-key: " + api.key.encode() +
                                       b"\r\nIdempotency-Key: imp\xe9rt", body)
    assert status == 400 and "ASCII" in orjson.loads(out)["errorMessage"]
    assert await api.all_calls(batch) == []


async def test_an_admin_token_that_is_not_utf8_is_403(api):
    status, _, out = await raw_request(api.client, b"GET /api/admin/workspaces HTTP/1.1\r\nHost: x\r\n"
                                       b"Authorization: Bearer adm\xe9")
    assert status == 403 and orjson.loads(out)["code"] == 403


async def test_long_headers_and_request_lines_are_answered_in_the_envelope(api):
    batch = await api.create_batch()
    resp = await api.client.get(f"/api/call/batches/{batch}", headers={"x-api-key": "k" * 10_000})
    doc = await resp.json()
    assert resp.status == 403 and doc["errorMessage"] == "invalid API key"
    code, doc = await api.get(f"/api/call/batches/{batch}/calls?cursor={'z' * 9_000}")
    assert code == 400 and "cursor" in doc["errorMessage"]


@pytest.fixture
async def twilio_api(aiohttp_client, settings, clock):
    app = build_app(settings.replace(twilio_auth_token="secret-token", public_base_url="http://dialer.test"), clock)
    client = await aiohttp_client(app)
    return await make_api(client, app)


@pytest.mark.parametrize("content_type, body", [
    (b"multipart/form-data", b"--x\r\nContent-Disposition: form-data; name=\"CallStatus\"\r\n\r\ncompleted\r\n--x--"),
    (b"multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"CallSt"),
    (b"application/x-www-form-urlencoded", b"CallSid=CA1&CallStatus=compl\xffeted"),
    (b"application/x-www-form-urlencoded", b"CallStatus"),
    (b"application/json", b'{"CallStatus": "completed"}'),
])
async def test_unreadable_twilio_callbacks_are_403_and_change_nothing(twilio_api, clock, content_type, body):
    from tests import states

    api = twilio_api
    batch = await api.create_batch()
    _, doc = await api.add_calls(batch, [{"phoneNumber": "+12125550100"}])
    call_id = doc["data"]["callIds"][0]
    await states.ring(api.store, call_id, clock.now())
    before = await api.all_calls(batch)
    for path in ("status", "twiml"):
        status, _, out = await raw_request(
            api.client, f"POST /webhooks/twilio/{path}?callId={call_id}&batchId={batch} HTTP/1.1\r\nHost: x\r\n"
                        "X-Twilio-Signature: c2lnbmF0dXJl\r\nContent-Type: ".encode() + content_type, body)
        assert status == 403 and b"invalid Twilio callback" in out
    assert await api.all_calls(batch) == before


async def test_two_extensions_behind_one_number_are_two_callees(api):
    batch = await api.create_batch()
    code, doc = await api.add_calls(batch, [{"phoneNumber": "+1 212 555 0160 ext 22", "who": "a"},
                                            {"phoneNumber": "+1 212 555 0160 ext 23", "who": "b"},
                                            {"phoneNumber": "+1 (212) 555-0160 x 23", "who": "c"}])
    assert code == 200 and doc["data"]["added"] == 2 and doc["data"]["duplicatesCollapsed"] == 1
    calls = {c["extension"]: c for c in await api.all_calls(batch)}
    assert set(calls) == {"22", "23"} and calls["23"]["variables"] == {"who": "c"}
    assert {c["phoneNumber"] for c in calls.values()} == {"+12125550160"}
    code, doc = await api.add_calls(batch, [{"phoneNumber": "+12125550160"}])  # the number itself: a third
    assert code == 200 and doc["data"]["inserted"] == 1


@pytest.mark.parametrize("value", [-(2 ** 63) - 1, -(2 ** 70), 2 ** 64, 10 ** 30])
async def test_integers_beyond_64_bits_are_refused_not_rounded(api, value):
    batch = await api.create_batch()
    raw = b'{"batchId": "%s", "call_data": [{"phoneNumber": "+12125550100", "n": %d}]}' % (batch.encode(), value)
    code, doc = await api.post("/api/call/addCallsToBatch", raw=raw, headers={"Content-Type": "application/json"})
    assert code == 400 and "64 bits" in doc["data"]["errors"][0]["reason"]
    assert await api.all_calls(batch) == []


async def test_the_64_bit_extremes_are_stored_exactly(api):
    batch = await api.create_batch()
    raw = b'{"batchId": "%s", "call_data": [{"phoneNumber": "+12125550100", "lo": %d, "hi": %d, "id": "%s"}]}' % (
        batch.encode(), -(2 ** 63), 2 ** 63 - 1, b"1" * 25)
    code, _ = await api.post("/api/call/addCallsToBatch", raw=raw, headers={"Content-Type": "application/json"})
    assert code == 200
    [call] = await api.all_calls(batch)
    assert call["variables"] == {"lo": -(2 ** 63), "hi": 2 ** 63 - 1, "id": "1" * 25}


async def test_a_record_over_the_document_limit_is_400_naming_it(api):
    batch = await api.create_batch()
    records = [{"phoneNumber": "+12125550100"}, {"phoneNumber": "+12125550101", "blob": "x" * (16 * 1024 * 1024)},
               {"phoneNumber": "+12125550102", "small": [1] * 10}]
    code, doc = await api.add_calls(batch, records)
    assert code == 400 and doc["data"]["invalidRecords"] == 1
    [error] = doc["data"]["errors"]
    assert error["index"] == 1 and error["phoneNumber"] == "+12125550101" and "bytes" in error["reason"]
    assert await api.all_calls(batch) == []


async def test_large_bodies_are_parsed_aside_with_the_same_answers(api):
    """Bodies over 1 MB are parsed in a worker process: malformed JSON and long integers are still
    refused, and a good one is written whole."""
    batch = await api.create_batch()
    records = [{"phoneNumber": f"+1212{i:07d}", "note": "x" * 100} for i in range(2_000_000, 2_009_000)]
    good = orjson.dumps({"batchId": batch, "call_data": records})
    assert len(good) > 1 << 20
    code, doc = await api.post("/api/call/addCallsToBatch", raw=good[:-1], headers={"Content-Type": "application/json"})
    assert code == 400 and "malformed JSON" in doc["errorMessage"]
    big = good[:-2] + b', {"phoneNumber": "+13055550100", "n": 99999999999999999999}]}'
    code, doc = await api.post("/api/call/addCallsToBatch", raw=big, headers={"Content-Type": "application/json"})
    assert code == 400 and doc["data"]["errors"][0]["index"] == 9000 and "64 bits" in doc["data"]["errors"][0]["reason"]
    assert await api.all_calls(batch) == []
    code, doc = await api.post("/api/call/addCallsToBatch", raw=good, headers={"Content-Type": "application/json"})
    assert code == 200 and doc["data"]["added"] == 9000
    calls = await api.all_calls(batch)
    assert len(calls) == 9000 and calls[0]["variables"] == {"note": "x" * 100}


async def test_a_wrong_method_is_405_naming_the_allowed_ones(api):
    """RFC 9110: a 405 carries Allow; the envelope used to drop it (found by schemathesis)."""
    resp = await api.client.request("TRACE", "/api/call/createBatch", headers=api.headers())
    doc = await resp.json()
    assert resp.status == 405 and doc["code"] == 405 and resp.headers["Allow"] == "POST"
    resp = await api.client.delete("/api/call/batches", headers=api.headers())
    assert resp.status == 405 and set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}


async def test_the_elevenlabs_face_words_are_not_batch_ids(api):
    """GET .../submit is a 405 (POST only), not a lookup of a batch called "submit" (found by schemathesis)."""
    resp = await api.client.get("/v1/convai/batch-calling/submit", headers={"xi-api-key": api.key})
    assert resp.status == 405 and resp.headers["Allow"] == "POST"
    resp = await api.client.delete("/v1/convai/batch-calling/workspace", headers={"xi-api-key": api.key})
    assert resp.status == 405 and set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}


async def _send(api, method: str, path: str, body: bytes, **headers: str):
    resp = await api.client.request(method, path, data=body, headers={**api.headers(), "xi-api-key": api.key,
                                                                      "Content-Type": "application/json", **headers})
    return resp.status, await resp.json()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_its_content_encoding_does_not_decode_is_400_in_each_faces_shape(api, encoding, caplog):
    """`Content-Encoding: gzip` on a body that is not gzip was a 500 on every route that reads a body (aiohttp
    decodes as it reads and raised); each face now says what is wrong, in its own shape, and logs no error."""
    batch = await api.create_batch()
    agent = str(api.agent["_id"])
    bad = b'{"name": "not compressed"}'
    status, doc = await _send(api, "POST", "/api/call/createBatch", bad, **{"Content-Encoding": encoding})
    assert status == 400 and doc["code"] == 400 and f"not valid {encoding} data" in doc["errorMessage"]
    status, doc = await _send(api, "POST", "/api/call/addCallsToBatch", bad, **{"Content-Encoding": encoding})
    assert status == 400 and doc["code"] == 400
    status, doc = await _send(api, "PATCH", f"/api/call/batches/{batch}", bad, **{"Content-Encoding": encoding})
    assert status == 400 and doc["code"] == 400
    status, doc = await _send(api, "POST", f"/api/v1/agents/{agent}/schedule/sequences", bad,
                              **{"Content-Encoding": encoding})
    assert status == 400 and doc["statusCode"] == 400 and f"not valid {encoding} data" in doc["message"]
    status, doc = await _send(api, "POST", "/v1/convai/batch-calling/submit", bad, **{"Content-Encoding": encoding})
    assert status == 422 and f"not valid {encoding} data" in doc["detail"][0]["msg"]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert await api.all_calls(batch) == []


async def test_a_compressed_body_is_read_as_its_content_encoding_says(api):
    import gzip

    body = gzip.compress(orjson.dumps({"name": "compressed", "agentId": str(api.agent["_id"])}))
    status, doc = await _send(api, "POST", "/api/call/createBatch", body, **{"Content-Encoding": "gzip"})
    assert status == 200 and doc["data"]["name"] == "compressed"


async def test_the_elevenlabs_face_answers_unknown_paths_and_methods_in_its_shape(api):
    """What aiohttp refuses under /v1/ was plain text ("404: Not Found"); an ElevenLabs client parses JSON."""
    status, doc = await _send(api, "GET", "/v1/convai/nope", b"")
    assert status == 404 and doc["detail"]["status"] == "not_found"
    status, doc = await _send(api, "PUT", "/v1/convai/batch-calling/submit", b"{}")
    assert status == 405 and doc["detail"]["message"] == "Method Not Allowed."


async def test_a_refused_request_with_an_undecodable_body_logs_no_error(api, caplog):
    """Answered before its body is read (no key: 403), a body that does not decode made aiohttp log a traceback."""
    resp = await api.client.post("/api/call/createBatch", data=b"not gzip",
                                 headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert resp.status == 403 and (await resp.json())["code"] == 403
    resp = await api.client.get("/api/call/batches", data=b"not gzip",
                                headers={**api.headers(), "Content-Encoding": "gzip"})
    assert resp.status == 200
    await asyncio.sleep(0.05)  # the server's end of each connection
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_a_client_gone_before_its_body_ended_logs_no_error(settings, clock, caplog):
    """`dialer serve` runs the app as web.run_app does (a handler is not cancelled when its client leaves): reading
    the body of a client that stopped sending 89 bytes short raised ConnectionResetError, logged as an error."""
    app = build_app(settings, clock)
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        _, key = await app[TENANCY].create_workspace("gone")
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(b"POST /api/call/addCallsToBatch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"x-api-key: " + key.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"batchId\": \"")
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.3)  # the server reads what came, then finds the connection gone
    finally:
        await runner.cleanup()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
