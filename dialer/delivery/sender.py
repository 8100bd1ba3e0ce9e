"""A webhook sender: leases due messages per endpoint and delivers them as Standard Webhooks says.

Every API process and every `dialer worker` runs one (through the composition root). Each pass relays the
outbox (relay.py), then, for each endpoint with due messages, starts as many lanes as the endpoint has free
senders in this process (`per_endpoint`, so one slow partner never holds up another). A lane leases up to
LANE_MESSAGES of the endpoint's due messages at once (one write for several deliveries), posts them one
after the other, then leases the next ones, until none is due. A lease outlives that many timeouts; a
sender that dies mid-delivery leaves its leases to run out and another process takes the messages over: at
least once, partners dedupe by webhook-id.

An attempt: the URL checked again (DNS may have changed: services/webhook_urls.py), then connected to
through a connector whose resolver refuses private answers itself (guard.py: a name that changes between
the check and the connection is refused, not followed), a POST with
webhook-id (the message's, stable across attempts), webhook-timestamp (this attempt's; wall-clock seconds,
since the receiver checks it against its own clock) and webhook-signature; redirects are not followed;
at most ANSWER_LIMIT of the answer are read (then the connection is dropped; the first RESPONSE_BYTES are
logged); a 2xx answered whole within the timeout is success, anything else (an error, a hang, a redirect, a closed connection) a failed attempt, retried
after the next delay of the schedule, the message failed once the schedule is spent. The receiver steers
as Standard Webhooks and Svix let it: a `Retry-After` (seconds or an HTTP date) on a failed answer puts the
next attempt no sooner than it asks (at most RETRY_AFTER_LIMIT later), `webhook-delivery: abort-message`
fails the message at once, and a 410 Gone disables the endpoint. An endpoint failing for DISABLE_AFTER
straight is disabled too; a disabled endpoint's waiting messages fail (recoverable with /recover).
Scheduling, leases and the disable rule follow the injected clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import time

import aiohttp
from bson import ObjectId

from dialer.core.clock import Clock
from dialer.delivery.guard import GuardedResolver
from dialer.delivery.relay import relay_once
from dialer.delivery.signing import signature_header
from dialer.logs import Outage
from dialer.metrics import Metrics
from dialer.ports import Repositories, StoreUnavailable
from dialer.services.webhook_urls import UrlRefused, check_url

log = logging.getLogger("dialer.webhooks")
RESPONSE_BYTES = 1024  # kept in the log
ANSWER_LIMIT = 64 * 1024  # read at most; a longer answer fails the attempt (the rest is never read)
DISABLE_AFTER = dt.timedelta(days=5)
RETRY_AFTER_LIMIT = 24 * 3600.0  # a receiver's Retry-After is honoured up to a day
LEASE_MARGIN = dt.timedelta(seconds=30)
LANE_MESSAGES = 8  # leased by a lane at once


class Sender:
    def __init__(self, repos: Repositories, clock: Clock, name: str, delays: tuple[float, ...], *,
                 timeout_seconds: float = 15.0, per_endpoint: int = 4, allow_insecure: bool = False,
                 poll_seconds: float = 0.5, metrics: Metrics | None = None, resolver=None) -> None:
        self.repos = repos
        self.clock = clock
        self.name = name
        self.delays = delays
        self.timeout = timeout_seconds
        self.per_endpoint = per_endpoint
        self.allow_insecure = allow_insecure
        self.poll = poll_seconds
        self.outage = Outage(log, "webhook sender")
        self.metrics = metrics or Metrics()
        self.resolver = resolver  # the URL checks' (aiohttp's default when None)
        self.lease = LANE_MESSAGES * dt.timedelta(seconds=timeout_seconds) + LEASE_MARGIN
        self.busy: dict[ObjectId, int] = {}
        self.tasks: set[asyncio.Task] = set()
        self.session: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task | None = None

    # ---- running ---------------------------------------------------------------------------------
    async def open(self) -> None:
        """The HTTP client, created inside the running loop; its connections resolve through the guard."""
        if self.session is None:
            guard = GuardedResolver(self.resolver or aiohttp.DefaultResolver(), self.allow_insecure,
                                    owns_inner=self.resolver is None)
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                                 connector=aiohttp.TCPConnector(limit=0, resolver=guard))

    async def start(self) -> None:
        await self.open()
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
                self.outage.ok(sender=self.name)
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:  # a full disk, a lock held too long: no traceback per pass
                self.outage.failed(exc, sender=self.name)
            except Exception:
                log.exception("webhook sender pass failed", extra={"sender": self.name})
            await asyncio.sleep(self.poll)

    async def drain(self) -> None:
        """Wait for the deliveries under way (tests)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    # ---- one pass --------------------------------------------------------------------------------
    async def tick(self) -> int:
        """Relay the outbox, then start the deliveries that are due; how many were started."""
        while await relay_once(self.repos, self.clock, self.delays[0]):
            pass
        now = self.clock.now()
        started = 0
        for endpoint_id in await self.repos.webhooks.due_endpoints(now, 1000):
            free = self.per_endpoint - self.busy.get(endpoint_id, 0)
            if free <= 0:
                continue
            endpoint = await self.repos.webhooks.get_endpoint(endpoint_id)
            if endpoint is None:
                continue
            leased = await self.repos.webhooks.lease(endpoint_id, now, self.name, now + self.lease,
                                                     free * LANE_MESSAGES)
            lanes = [leased[i::free] for i in range(min(free, len(leased)))]  # due first, spread over lanes
            for messages in lanes:
                self.busy[endpoint_id] = self.busy.get(endpoint_id, 0) + 1
                task = asyncio.get_running_loop().create_task(self._lane(endpoint, messages))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                started += len(messages)
        return started

    async def _lane(self, endpoint: dict, messages: list[dict]) -> None:
        """One of an endpoint's senders: these messages, then the endpoint's next due ones (the endpoint read
        again, as it may have changed), until none is due; a busy partner is not held to a few a pass."""
        endpoint_id = endpoint["_id"]
        try:
            while True:
                for message in messages:
                    endpoint = await self._deliver(endpoint, message)
                endpoint = await self.repos.webhooks.get_endpoint(endpoint_id)
                now = self.clock.now()
                messages = await self.repos.webhooks.lease(endpoint_id, now, self.name, now + self.lease,
                                                           LANE_MESSAGES) if endpoint is not None else []
                if not messages:
                    return
        except StoreUnavailable as exc:  # the next pass takes the endpoint up again
            log.warning("webhook sender lane failed; the next pass takes it up",
                        extra={"endpointId": str(endpoint_id), "error": str(exc)})
        except Exception:
            log.exception("webhook sender lane failed", extra={"endpointId": str(endpoint_id)})
        finally:
            left = self.busy.get(endpoint_id, 1) - 1
            if left > 0:
                self.busy[endpoint_id] = left
            else:
                self.busy.pop(endpoint_id, None)

    async def _deliver(self, endpoint: dict, message: dict) -> dict:
        """One attempt, recorded; the endpoint as it stands after it (its failing streak, a disable)."""
        try:
            if endpoint.get("disabled"):
                return await self._record(endpoint, message, {"at": self.clock.now(), "error": "endpoint disabled",
                                                              "ms": 0}, ok=False, final=True)
            attempt, ok = await self._attempt(endpoint, message)
            return await self._record(endpoint, message, attempt, ok)
        except StoreUnavailable as exc:  # its attempt unrecorded: the message is sent again once its lease ends
            log.warning("webhook attempt not recorded", extra={"messageId": message["_id"], "error": str(exc)})
            return endpoint
        except Exception:
            log.exception("webhook delivery failed", extra={"messageId": message["_id"]})
            return endpoint

    async def _attempt(self, endpoint: dict, message: dict) -> tuple[dict, bool]:
        now = self.clock.now()
        body = message["body"].encode()
        stamp = int(time.time())
        headers = {"content-type": "application/json", "user-agent": "dialer-webhooks/1",
                   "webhook-id": message["_id"], "webhook-timestamp": str(stamp),
                   "webhook-signature": signature_header(endpoint, message["_id"], stamp, body, now)}
        attempt: dict = {"at": now}
        started = time.monotonic()
        try:
            await check_url(endpoint["url"], self.allow_insecure, self.resolver)
            async with asyncio.timeout(self.timeout):
                async with self.session.post(endpoint["url"], data=body, headers=headers,
                                             allow_redirects=False) as response:
                    attempt["httpStatus"] = response.status
                    _steering(response, attempt)
                    answer = await _read_at_most(response, ANSWER_LIMIT + 1)
                    attempt["response"] = answer[:RESPONSE_BYTES].decode("utf-8", errors="replace")
                    if len(answer) > ANSWER_LIMIT:
                        attempt["error"] = f"the answer exceeds {ANSWER_LIMIT // 1024} KiB"
                    response.close()  # whatever else it sends is not read
        except UrlRefused as exc:
            attempt["error"] = f"refused: {exc}"
        except TimeoutError:
            attempt["error"] = f"no answer within {self.timeout:g} s"
        except aiohttp.ClientError as exc:
            attempt["error"] = f"{type(exc).__name__}: connection failed or closed"
        attempt["ms"] = round((time.monotonic() - started) * 1000)
        return attempt, 200 <= attempt.get("httpStatus", 0) < 300 and "error" not in attempt

    async def _record(self, endpoint: dict, message: dict, attempt: dict, ok: bool, final: bool = False) -> dict:
        now = self.clock.now()
        step = message.get("step", 0) + 1
        gone = attempt.get("httpStatus") == 410
        if ok:
            status, due, outcome = "delivered", None, "delivered"
        elif final or gone or attempt.get("aborted") or step >= len(self.delays):
            status, due, outcome = "failed", None, "failed"
        else:
            wait = max(self.delays[step], attempt.get("retryAfterSeconds", 0))
            status, due, outcome = "pending", now + dt.timedelta(seconds=wait), "retry"
        if not await self.repos.webhooks.record_attempt(message["_id"], self.name, attempt, status, step, due):
            return endpoint  # our lease ran out and another sender took the message over
        self.metrics.webhook_deliveries.labels(outcome).inc()
        log.info("webhook attempt", extra={"messageId": message["_id"], "endpointId": str(endpoint["_id"]),
                                           "status": attempt.get("httpStatus"), "error": attempt.get("error"),
                                           "result": outcome})
        if endpoint.get("disabled"):
            return endpoint
        if gone:
            return await self._disable(endpoint, "the endpoint answered 410 Gone", now)
        failing = endpoint.get("failingSince")  # as read before this message was sent, or kept since
        if ok == (failing is None) and not (failing and now - failing >= DISABLE_AFTER):
            return endpoint  # nothing changes (the write is saved: one fewer per delivery in the steady state)
        after = await self.repos.webhooks.note_result(endpoint["_id"], ok, now)
        if after is None:
            return endpoint
        if after.get("failingSince") and now - after["failingSince"] >= DISABLE_AFTER and not after.get("disabled"):
            return await self._disable(after, f"every delivery failed for {DISABLE_AFTER.days} days", now)
        return after

    async def _disable(self, endpoint: dict, reason: str, now: dt.datetime) -> dict:
        await self.repos.webhooks.update_endpoint(endpoint["_id"], {"disabled": True, "disabledReason": reason,
                                                                    "updatedAt": now})
        log.warning("webhook endpoint disabled", extra={"endpointId": str(endpoint["_id"]), "reason": reason})
        return {**endpoint, "disabled": True, "disabledReason": reason}


def _steering(response: aiohttp.ClientResponse, attempt: dict) -> None:
    """What a failed answer asks of the sender, noted on the attempt: `aborted` (webhook-delivery:
    abort-message) and `retryAfterSeconds` (Retry-After, as seconds or an HTTP date; bounded)."""
    if 200 <= response.status < 300:
        return
    if response.headers.get("webhook-delivery", "").strip().lower() == "abort-message":
        attempt["aborted"] = True
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return  # unreadable: the schedule decides
        if when.tzinfo is None:
            return
        seconds = when.timestamp() - time.time()  # an HTTP date is the receiver's wall clock
    attempt["retryAfterSeconds"] = round(min(max(seconds, 0.0), RETRY_AFTER_LIMIT))


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    data = bytearray()
    while len(data) < limit:
        chunk = await response.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)
