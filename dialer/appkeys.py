"""Typed application state: every web.AppKey the API app uses, in one place."""

from aiohttp import web

from .batches import Batches
from .call_events import CallEvents
from .clock import Clock
from .ingestion import Ingestion
from .phones import PhoneNormaliser
from .settings import Settings
from .store import Store
from .tenancy import Tenancy

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
STORE = web.AppKey("store", Store)
PHONES = web.AppKey("phones", PhoneNormaliser)
TENANCY = web.AppKey("tenancy", Tenancy)
BATCHES = web.AppKey("batches", Batches)
INGESTION = web.AppKey("ingestion", Ingestion)
EVENTS = web.AppKey("events", CallEvents)
REQUEST_ID = web.RequestKey("request_id", str)
