"""The dispatcher engine: the composition root of a dispatcher (store, provider, jobs) and its lifecycle.

Runs inside `dialer worker`, or inside the API process (`dialer serve` on the embedded store). Periodic jobs run
on APScheduler 3's AsyncIOScheduler: the dispatch tick (which also delivers simulator events), the
reaper (leases, slots, scheduled starts). SIGTERM / stop(): claim nothing more, hand back calls
claimed but not placed, wait (bounded) for running jobs, log a one-line summary.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from dialer.core.clock import Clock
from dialer.ports import Repositories, StoreUnavailable
from dialer.services.call_events import CallEvents
from dialer.services.chains import Chains
from dialer.services.enrollment import Enrollment
from dialer.settings import Settings
from workers.slots import Slots

from workers.dispatcher import Dispatcher, DispatcherConfig
from dialer.logs import Outage
from workers.telephony.base import CallEvent, TelephonyProvider
from workers.telephony.simulator import Simulator, parse_outcomes
from workers.reaper import Reaper

log = logging.getLogger("workers.engine")
SIM_CONCURRENT_EVENTS = 64  # the simulator's calls whose events are applied at once (Twilio's arrive as requests)


def make_provider(settings: Settings, clock: Clock) -> TelephonyProvider:
    if settings.provider == "twilio":
        from workers.telephony.twilio import TwilioProvider

        if not settings.twilio_account_sid or not settings.twilio_auth_token:
            raise ValueError("DIALER_PROVIDER=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        if not settings.public_base_url:
            raise ValueError("DIALER_PROVIDER=twilio needs DIALER_PUBLIC_BASE_URL (where Twilio reaches our webhooks)")
        return TwilioProvider(settings.twilio_account_sid, settings.twilio_auth_token,
                              timeout=settings.twilio_timeout_seconds, api_base=settings.twilio_api_base or None)
    if settings.provider == "simulator":
        return Simulator(clock, parse_outcomes(settings.sim_outcomes), settings.sim_mean_duration_seconds,
                         settings.sim_time_scale, concurrent_events=SIM_CONCURRENT_EVENTS)
    raise ValueError(f"unknown provider {settings.provider!r}: use simulator or twilio")


class Engine:
    def __init__(self, repos: Repositories, clock: Clock, settings: Settings, provider: TelephonyProvider,
                 events: CallEvents, name: str | None = None, events_in_process: bool | None = None,
                 chains: Chains | None = None, enrollment: Enrollment | None = None) -> None:
        """`events_in_process`: the provider's events reach this process (the simulator's, unless told
        otherwise), so calls ending poke the dispatcher; else (Twilio's callbacks go to the API) it
        finds freed slots by looking again every few polls."""
        self.repos = repos
        self.clock = clock
        self.settings = settings
        self.provider = provider
        self.name = name or f"dispatcher-{secrets.token_hex(3)}"
        self.slots = Slots(repos.ledger, grace_seconds=settings.lease_seconds)
        self.events = events
        cps = settings.calls_per_second
        # An idle dispatcher looks again every few polls for work from other processes (status
        # callbacks to the API, calls enqueued by another API process). With the simulator every
        # call's end is an event in this process (it pokes) and it runs inside the API (enqueueing
        # wakes it), so a minute is enough.
        recheck = 4 * settings.poll_interval_seconds
        if isinstance(provider, Simulator):
            cps *= settings.sim_time_scale  # the simulator compresses time, rate budget included
            if events_in_process is None:
                events_in_process = True
        if events_in_process:
            provider.sink = self.deliver
            recheck = 120 * settings.poll_interval_seconds
        self.dispatcher = Dispatcher(repos, clock, provider, self.events, self.slots, DispatcherConfig(
            calls_per_second=cps, max_concurrent_calls=settings.max_concurrent_calls,
            lease_seconds=settings.lease_seconds, public_base_url=settings.public_base_url,
            recheck_seconds=recheck,
            machine_detection=settings.machine_detection), name=self.name)
        policies = getattr(self.events, "policies", None)
        if policies is not None:  # the events this process applies read the batches' retry policies it reads
            policies.current = self.dispatcher.book.batches.get
        self.events.on_ended.append(self.ended)
        self.reaper = Reaper(repos, clock, provider, self.events, self.slots, settings.lease_seconds, name=self.name,
                             chains=chains, enrollment=enrollment, webhook_retention=settings.webhook_retention)
        self.reaper.on_started = self.dispatcher.wake
        self._scheduler: AsyncIOScheduler | None = None
        self._jobs_running = 0
        self._outages: dict = {}  # job -> its Outage (how a store outage is logged)

    async def deliver(self, event: CallEvent) -> None:
        await self.events.apply(event.call_id, event.provider_call_id, event.status,
                                batch_id=event.extra.get("batchId"), attempt=event.extra.get("attempt"),
                                answered_by=event.answered_by, duration=event.duration, error=event.error)

    def ended(self, batch_id, kind: str) -> None:
        """A call left flight: in this process (the events service tells, whatever the event came through), or in
        another process of the machine (its wake-up, dialer/wakeups.py)."""
        self.dispatcher.poke(batch_id)  # a slot is free: look again at the next tick (at this batch's slots)
        if kind == "retry":  # and the batch has a call in its queue again: back in turn
            self.dispatcher.requeued(batch_id)

    async def step(self) -> int:
        """One dispatch tick plus delivery of due simulator events (what the scheduler runs)."""
        pump = getattr(self.provider, "pump", None)
        if pump is not None:
            await pump()
        if self.dispatcher.book.starts_due(self.clock.now()):  # a scheduled start it saw has come
            await self.reaper.start_scheduled()
        return await self.dispatcher.tick()

    async def _guarded(self, job) -> None:
        self._jobs_running += 1
        outage = self._outages.setdefault(job, Outage(log, "dispatcher job" if job == self.step else "reaper"))
        try:
            await job()
            outage.ok(dispatcher=self.name)
        except StoreUnavailable as exc:  # one line when it starts, one a minute, one when it ends
            outage.failed(exc, dispatcher=self.name)
        except Exception:
            log.exception("dispatcher job failed; it runs again at its next interval")
        finally:
            self._jobs_running -= 1

    def start(self) -> None:
        scheduler = AsyncIOScheduler()
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        scheduler.add_job(self._guarded, "interval", args=[self.step], id="dispatch",
                          seconds=self.settings.poll_interval_seconds, **common)
        scheduler.add_job(self._guarded, "interval", args=[self.reaper.run], id="reaper",
                          seconds=max(1.0, self.settings.lease_seconds / 2), **common)
        scheduler.start()
        self._scheduler = scheduler
        log.info("dispatcher started", extra={"dispatcher": self.name, "provider": self.provider.name})

    async def stop(self, timeout: float = 10.0) -> None:
        await self.dispatcher.stop_claiming()
        if self.ended in self.events.on_ended:
            self.events.on_ended.remove(self.ended)
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        # Let a job that is mid-flight finish (bounded): it may be placing calls.
        deadline = asyncio.get_running_loop().time() + timeout
        while self._jobs_running and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await self.provider.close()
        log.info(f"dispatcher stopped: {self.dispatcher.stats.summary()} recovered={self.reaper.recovered}",
                 extra={"dispatcher": self.name})
