"""The API process for tests that need a real server on a port: build_app (the composition root, as
`dialer serve` uses it) served by aiohttp on 127.0.0.1 and a free port, in a thread of its own with
its own event loop, so that synchronous clients (schemathesis, requests) can call it from the test."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from dialer.composition import build_app
from dialer.settings import Settings


class LiveServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="live-server", daemon=True)

    def __enter__(self) -> "LiveServer":
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the live server did not start within 30 s")
        if self._failed is not None:
            raise RuntimeError("the live server failed to start") from self._failed
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(build_app(self.settings))
        try:
            self._loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            port = runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}"
        except BaseException as exc:  # reported by __enter__
            self._failed = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()
