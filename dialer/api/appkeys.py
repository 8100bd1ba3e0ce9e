"""Typed application state: every web.AppKey the API app uses, in one place."""

from aiohttp import web

from dialer.core.clock import Clock
from dialer.core.phones import PhoneNormaliser
from dialer.metrics import Metrics
from dialer.ports import Repositories
from dialer.services.batches import Batches
from dialer.services.call_events import CallEvents
from dialer.services.chains import Chains
from dialer.services.dnc import Dnc
from dialer.services.enrollment import Enrollment
from dialer.services.idempotency import Idempotency
from dialer.services.ingestion import Ingestion
from dialer.services.lifecycle import Lifecycle
from dialer.delivery.sender import Sender
from dialer.services.submissions import Submissions
from dialer.services.tenancy import Tenancy
from dialer.services.webhooks import Webhooks
from dialer.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
REPOS = web.AppKey("repos", Repositories)
PHONES = web.AppKey("phones", PhoneNormaliser)
TENANCY = web.AppKey("tenancy", Tenancy)
BATCHES = web.AppKey("batches", Batches)
INGESTION = web.AppKey("ingestion", Ingestion)
IDEMPOTENCY = web.AppKey("idempotency", Idempotency)
EVENTS = web.AppKey("events", CallEvents)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
SUBMISSIONS = web.AppKey("submissions", Submissions)
METRICS = web.AppKey("metrics", Metrics)
ENROLLMENT = web.AppKey("enrollment", Enrollment)
CHAINS = web.AppKey("chains", Chains)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
DNC = web.AppKey("dnc", Dnc)
SENDER = web.AppKey("sender", Sender)  # this process's webhook sender
DEMO = web.AppKey("demo", dict)
REQUEST_ID = web.RequestKey("request_id", str)
