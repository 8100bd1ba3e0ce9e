"""DNS rebinding: a webhook URL's name is checked when the endpoint is saved and before each attempt, and
the connection resolves it once more. A fake resolver, injected where the composition builds the sender
(build_app's `resolver`), answers as a rebinding attacker's DNS would; no real DNS is asked (the name
`localhost` is used because the system resolves it to 127.0.0.1: a sender connecting with a resolver of
its own would reach the listener below)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp.abc import AbstractResolver

from dialer.api.appkeys import SENDER
from dialer.composition import build_app
from tests.conftest import make_api

PUBLIC = "93.184.215.14"


class RebindingResolver(AbstractResolver):
    """Answers `answers[name]` in turn (the last one ever after), counting every lookup."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list:
        if host not in self.answers:
            raise OSError(f"{host} does not resolve")
        seen = self.lookups.count(host)
        self.lookups.append(host)
        address = self.answers[host][min(seen, len(self.answers[host]) - 1)]
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV}]

    async def close(self) -> None:
        pass


@pytest.fixture
async def listener():
    """A TCP listener on 127.0.0.1 that counts connections (whatever protocol is spoken)."""
    connections: list[int] = []

    async def accept(reader, writer):
        connections.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], connections
    server.close()
    await server.wait_closed()


async def deliver(api) -> None:
    sender = api.app[SENDER]
    while await sender.tick():
        await sender.drain()
    await sender.drain()


async def api_with(aiohttp_client, settings, clock, resolver):
    app = build_app(settings, clock, resolver=resolver)
    return await make_api(await aiohttp_client(app), app)


async def test_a_name_rebound_to_loopback_after_the_checks_is_refused_at_connection(
        aiohttp_client, settings, clock, listener):
    port, connections = listener
    # Public when the endpoint is saved and when the attempt checks it; loopback when the connection resolves.
    resolver = RebindingResolver({"localhost": [PUBLIC, PUBLIC, "127.0.0.1"]})
    api = await api_with(aiohttp_client, settings.replace(webhooks_allow_insecure=False), clock, resolver)
    code, hook = await api.post("/api/webhooks/endpoints", {"url": f"https://localhost:{port}/hook"})
    assert code == 200, hook
    await api.post(f"/api/webhooks/endpoints/{hook['data']['endpointId']}/test")
    await deliver(api)
    assert connections == []  # never reached
    assert resolver.lookups == ["localhost"] * 3  # saved, checked, connected: the connection asked the same DNS
    _, log = await api.get("/api/webhooks/messages")
    [message] = log["data"]["messages"]
    [attempt] = message["attempts"]
    assert attempt["error"].startswith("refused: ") and "resolves to a private" in attempt["error"], attempt
    assert "httpStatus" not in attempt and message["status"] == "pending"  # a failed attempt, retried later


async def test_with_insecure_endpoints_allowed_the_connection_uses_the_same_answers(
        aiohttp_client, settings, clock):
    from aiohttp import web

    got = []

    async def hook(request):
        got.append(await request.read())
        return web.Response(text="ok")

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    runner = web.AppRunner(receiver)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        # A name only the injected resolver knows: delivered only if the connection resolves through it.
        resolver = RebindingResolver({"partner.test": ["127.0.0.1"]})
        api = await api_with(aiohttp_client, settings.replace(webhooks_allow_insecure=True), clock, resolver)
        code, created = await api.post("/api/webhooks/endpoints", {"url": f"http://partner.test:{port}/hook"})
        assert code == 200, created
        await api.post(f"/api/webhooks/endpoints/{created['data']['endpointId']}/test")
        await deliver(api)
        assert len(got) == 1
        _, log = await api.get("/api/webhooks/messages")
        assert log["data"]["messages"][0]["status"] == "delivered"
    finally:
        await runner.cleanup()


class FlakyResolver(AbstractResolver):
    """A resolver that cannot answer now (EAI_AGAIN, as a DNS server timing out), then answers."""

    def __init__(self) -> None:
        self.failing = True

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list:
        if self.failing:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return [{"hostname": host, "host": PUBLIC, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV}]

    async def close(self) -> None:
        pass


async def test_a_host_the_resolver_cannot_answer_for_now_is_a_503_that_a_retry_with_its_key_asks_again(
        aiohttp_client, settings, clock):
    """Found by an exploratory run: a temporary DNS failure was the 400 "does not resolve", kept under the request's
    Idempotency-Key for a day: the retry, once DNS answered, got the 400 again."""
    resolver = FlakyResolver()
    api = await api_with(aiohttp_client, settings.replace(webhooks_allow_insecure=False), clock, resolver)
    body, key = {"url": "https://hooks.partner.example/dialer"}, {"Idempotency-Key": "hook-1"}
    code, doc = await api.post("/api/webhooks/endpoints", body, headers=key)
    assert code == 503 and "could not be resolved now" in doc["errorMessage"], doc
    resolver.failing = False
    code, doc = await api.post("/api/webhooks/endpoints", body, headers=key)
    assert code == 200 and doc["data"]["url"] == body["url"], doc
