"""The composition root: one function builds every service from Settings, for each process.

`open_services` (the use cases over the configured storage) serves `dialer serve`, `dialer worker`,
the management CLI and the tests; `build_engine` adds a dispatcher; `build_app` is the API process:
the API app with its services and, when configured (the embedded store), an embedded dispatcher.
Clients are created inside the running event loop and closed on shutdown; nothing is module-level.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import AsyncIterator

from aiohttp import web

from dialer.api import appkeys
from dialer.api.app import create_app
from dialer.core.clock import Clock, SystemClock
from dialer.core.phones import PhoneNormaliser
from dialer.metrics import Metrics
from dialer.ports import Repositories
from dialer.services.batches import Batches
from dialer.core.chains import ChainRule
from dialer.services.call_events import BatchPolicies, CallEvents
from dialer.services.chains import Chains
from dialer.services.dnc import Dnc
from dialer.services.enrollment import Enrollment
from dialer.services.idempotency import Idempotency
from dialer.services.ingestion import Ingestion
from dialer.services.lifecycle import Lifecycle
from dialer.services.submissions import Submissions
from dialer.services.tenancy import Tenancy
from dialer.services.webhooks import Webhooks
from dialer.settings import Settings
from dialer.store import open_repositories


@dataclass
class Services:
    settings: Settings
    clock: Clock
    repos: Repositories
    phones: PhoneNormaliser
    tenancy: Tenancy
    batches: Batches
    idempotency: Idempotency
    ingestion: Ingestion
    events: CallEvents
    lifecycle: Lifecycle
    submissions: Submissions
    enrollment: Enrollment
    chains: Chains
    metrics: Metrics
    webhooks: Webhooks
    dnc: Dnc
    resolver: object = None  # DNS for webhook URLs (an aiohttp AbstractResolver; the system's when None)

    closers: list = field(default_factory=list)

    async def close(self) -> None:
        await self.enrollment.close()
        for close in self.closers:
            await close()
        self.ingestion.bodies.close()
        await self.repos.close()


def services_over(repos: Repositories, settings: Settings, clock: Clock, resolver=None) -> Services:
    settings.webhook_retention  # read at start: a bad DIALER_WEBHOOK_RETENTION_DAYS is refused, like the delays
    metrics = Metrics()
    phones = PhoneNormaliser(settings.default_region, settings.strict_numbers)
    tenancy = Tenancy(repos.tenancy, clock, phones)
    batches = Batches(repos.batches, repos.calls, clock)
    idempotency = Idempotency(repos.idempotency, clock, settings.idempotency_ttl_seconds,
                              settings.idempotency_claim_seconds)
    dnc = Dnc(repos.dnc, repos.calls, repos.batches, clock, phones, settle_seconds=2 + settings.twilio_timeout_seconds + 3)
    ingestion = Ingestion(settings, clock, tenancy, batches, repos.calls, phones, metrics, dnc=dnc)
    events = CallEvents(repos.calls, BatchPolicies(repos.batches, clock), clock, settings.lease_seconds, metrics)
    # A stop waits at most for the claims' dial times (2 s ahead) and a create to time out.
    lifecycle = Lifecycle(batches, repos.batches, repos.calls, clock,
                          settle_seconds=2 + settings.twilio_timeout_seconds + 3, intakes=repos.intakes)
    submissions = Submissions(tenancy, batches, repos.batches, ingestion, phones)
    enrollment = Enrollment(clock, tenancy, repos.tenancy, batches, repos.batches, repos.calls, repos.intakes, phones,
                            ingestion.bodies, settings.idempotency_ttl_seconds, metrics,
                            lease_seconds=settings.intake_lease_seconds, dnc=dnc)
    chains = Chains(repos.calls, repos.batches, clock,
                    ChainRule(settings.chain_min_success_seconds, settings.chain_verdict_seconds))
    events.on_group_call_final = chains.advance
    dnc.on_group_call_final = chains.advance
    webhooks = Webhooks(repos.webhooks, clock, settings.webhooks_allow_insecure, settings.webhook_delays, resolver)
    return Services(settings, clock, repos, phones, tenancy, batches, idempotency, ingestion, events, lifecycle,
                    submissions, enrollment, chains, metrics, webhooks, dnc, resolver)


async def open_services(settings: Settings, clock: Clock | None = None, resolver=None) -> Services:
    return services_over(await open_repositories(settings), settings, clock or SystemClock(), resolver)


def build_engine(services: Services, provider=None, name: str | None = None, settings: Settings | None = None):
    """A dispatcher (with its reaper and jobs) over these services; the provider from settings unless given."""
    from workers.engine import Engine, make_provider

    settings = settings or services.settings
    provider = provider or make_provider(settings, services.clock)
    return Engine(services.repos, services.clock, settings, provider, services.events, name=name,
                  chains=services.chains, enrollment=services.enrollment)


def build_sender(services: Services, name: str):
    """A partner webhook sender over these services (every API and worker process runs one)."""
    from dialer.delivery.sender import Sender

    s = services.settings
    return Sender(services.repos, services.clock, name, s.webhook_delays, timeout_seconds=s.webhook_timeout_seconds,
                  per_endpoint=s.webhook_senders_per_endpoint, allow_insecure=s.webhooks_allow_insecure,
                  poll_seconds=s.poll_interval_seconds, metrics=services.metrics, resolver=services.resolver)


async def open_wakeups(services: Services, engine=None) -> None:
    """Wake-ups between the processes sharing the SQLite file (dialer/wakeups.py): this process's dispatcher, if
    it runs one, listens (and rechecks less often); the calls this process's events end, and the work it is
    given, are told to the others. Closed with the services."""
    from dialer.wakeups import WOKEN_RECHECK_SECONDS, WakeListener, WakeSender, wake_folder

    s = services.settings
    if not s.embedded or s.private:
        return  # MongoDB: processes on other machines are not reached; `:memory:`: no other process
    folder = wake_folder(s.data_dir)
    listener = WakeListener(folder, engine.ended, engine.dispatcher.wake) if engine is not None else None
    if listener is not None and await listener.start():
        engine.dispatcher.recheck_every(WOKEN_RECHECK_SECONDS)
    sender = WakeSender(folder, own=listener)
    sender.sweep()  # the sockets of processes killed before (kill -9) are not left to pile up while nothing is sent
    services.events.on_ended.append(sender)
    for service, hook in ((services.ingestion, "on_enqueued"), (services.enrollment, "on_enqueued"),
                          (services.chains, "on_activated"), (services.lifecycle, "on_change")):
        setattr(service, hook, _both(getattr(service, hook), sender.work))

    async def close() -> None:
        services.events.on_ended.remove(sender)
        sender.close()
        if listener is not None:
            listener.close()

    services.closers.append(close)


def _both(first, then):
    """A service's hook calling what it called before (the embedded dispatcher's wake-up), then `then`."""
    def hook() -> None:
        if first is not None:
            first()
        then()
    return hook


def build_app(settings: Settings, clock: Clock | None = None, resolver=None) -> web.Application:
    """The API process: the app, its services opened in the loop, the demo tenant and the embedded
    dispatcher when the settings ask for them. `resolver` (tests): DNS for the webhook URLs' checks and
    the sender's connections alike."""
    clock = clock or SystemClock()

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        from dialer.demo import seed_demo

        services = await open_services(settings, clock, resolver)
        install(app, services)
        if settings.warm_body_parser:
            services.ingestion.bodies.start()
        if services.repos.embedded:
            app[appkeys.DEMO] = await seed_demo(services.tenancy, settings)
        engine = None
        if settings.runs_embedded_dispatcher:
            engine = build_engine(services)
            services.ingestion.on_enqueued = engine.dispatcher.wake
            services.enrollment.on_enqueued = engine.dispatcher.wake
            services.chains.on_activated = engine.dispatcher.wake
            services.lifecycle.hang_up = engine.provider.hangup
            services.lifecycle.on_change = engine.dispatcher.wake
            engine.start()
        elif settings.provider == "twilio" and settings.twilio_account_sid and settings.twilio_auth_token:
            from workers.telephony.twilio import TwilioProvider  # cancel with hangUp ends calls through it

            hangups = TwilioProvider(settings.twilio_account_sid, settings.twilio_auth_token,
                                     timeout=settings.twilio_timeout_seconds, api_base=settings.twilio_api_base or None)
            services.lifecycle.hang_up = hangups.hangup
            services.closers.append(hangups.close)
        await open_wakeups(services, engine)  # Twilio's callbacks here wake the dispatchers of other processes
        await services.enrollment.resume()  # enrollments accepted before a crash and not yet scheduled
        sender = app[appkeys.SENDER] = build_sender(services, f"api-{os.getpid()}-{id(app):x}")
        await sender.start()
        yield
        await sender.stop()
        if engine is not None:
            await engine.stop()
        await services.close()

    return create_app(settings, lifespan)


def install(app: web.Application, services: Services) -> None:
    app[appkeys.CLOCK] = services.clock
    app[appkeys.REPOS] = services.repos
    app[appkeys.PHONES] = services.phones
    app[appkeys.TENANCY] = services.tenancy
    app[appkeys.BATCHES] = services.batches
    app[appkeys.INGESTION] = services.ingestion
    app[appkeys.IDEMPOTENCY] = services.idempotency
    app[appkeys.EVENTS] = services.events
    app[appkeys.LIFECYCLE] = services.lifecycle
    app[appkeys.SUBMISSIONS] = services.submissions
    app[appkeys.METRICS] = services.metrics
    app[appkeys.ENROLLMENT] = services.enrollment
    app[appkeys.CHAINS] = services.chains
    app[appkeys.WEBHOOKS] = services.webhooks
    app[appkeys.DNC] = services.dnc
