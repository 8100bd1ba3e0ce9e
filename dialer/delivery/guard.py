"""The sender's resolver: DNS answers checked where the connection is made, so a name that changes between
the check before an attempt and the connection (DNS rebinding) never reaches a private address.

aiohttp resolves a URL's host again when it connects; the sender's connector resolves through this guard,
which wraps the process's resolver (the one the URL checks use) and refuses an answer naming any private,
loopback, link-local, multicast, reserved or metadata address (services/webhook_urls.py) unless
DIALER_WEBHOOKS_ALLOW_INSECURE is on. The refusal (UrlRefused) reaches the sender's attempt, which records
it as a failed attempt. Literal IP addresses never reach a resolver: the check before the attempt covers them.
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult

from dialer.services.webhook_urls import check_addresses


class GuardedResolver(AbstractResolver):
    def __init__(self, inner: AbstractResolver, allow_insecure: bool, owns_inner: bool = False) -> None:
        self.inner = inner
        self.allow_insecure = allow_insecure
        self.owns_inner = owns_inner

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) \
            -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        check_addresses(host, [r["host"] for r in found], self.allow_insecure)
        return found

    async def close(self) -> None:
        if self.owns_inner:
            await self.inner.close()
