"""Typed application state: every web.AppKey the API app uses, in one place."""

from aiohttp import web

from dialer.services.batches import Batches
from dialer.services.call_events import CallEvents
from dialer.core.clock import Clock
from dialer.services.ingestion import Ingestion
from dialer.core.phones import PhoneNormaliser
from dialer.settings import Settings
from dialer.store import Store
from dialer.services.tenancy import Tenancy

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
STORE = web.AppKey("store", Store)
PHONES = web.AppKey("phones", PhoneNormaliser)
TENANCY = web.AppKey("tenancy", Tenancy)
BATCHES = web.AppKey("batches", Batches)
INGESTION = web.AppKey("ingestion", Ingestion)
EVENTS = web.AppKey("events", CallEvents)
REQUEST_ID = web.RequestKey("request_id", str)
