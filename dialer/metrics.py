"""Prometheus metrics: one registry per process (built by the composition root, never module-level),
served as text at `/metrics` by the API and by each dispatcher on its own port.

What is counted, and where: HTTP requests by route, method and status, with durations (the API's
middleware); records ingested and rejected (ingestion); calls placed, provider errors by kind and the
delay from a call's dial time to its placement (the placer); final outcomes (call events); calls in
flight per batch and for the account (the dispatcher, from the slot ledger at each claim); and, read
when scraped, the calls waiting per running batch (its counters: one read per batch); webhook delivery
attempts by result (the senders) and, read when scraped, the oldest undelivered webhook message's age.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from dialer.services.batches import counters_view

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("dialer_http_requests", "HTTP requests answered", ["route", "method", "status"],
                                     registry=r)
        self.http_seconds = Histogram("dialer_http_request_seconds", "HTTP request durations", ["route"], registry=r,
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.records = Counter("dialer_records", "Call records received by addCallsToBatch", ["result"], registry=r)
        self.placed = Counter("dialer_calls_placed", "Calls handed to the provider", ["provider"], registry=r)
        self.placement_delay = Histogram("dialer_placement_delay_seconds", "From a claim's dial time to its placement",
                                         registry=r, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
        self.provider_errors = Counter("dialer_provider_errors", "Provider refusals and failures", ["kind"], registry=r)
        self.outcomes = Counter("dialer_call_outcomes", "Calls that reached a final status", ["outcome"], registry=r)
        self.in_flight = Gauge("dialer_calls_in_flight", "Calls in flight (holding a slot), at the scrape",
                               ["batch"], registry=r)
        self._slots_shown: dict[str, int] = {}  # batch -> the value its in_flight gauge shows
        self.account_in_flight = Gauge("dialer_account_calls_in_flight", "Calls holding an account slot",
                                       registry=r)
        self.waiting = Gauge("dialer_calls_waiting", "Calls queued or held, per running batch", ["batch"], registry=r)
        self.webhook_deliveries = Counter("dialer_webhook_deliveries", "Webhook delivery attempts by result "
                                          "(delivered, retry: failed and rescheduled, failed: no attempt left)",
                                          ["outcome"], registry=r)
        self.webhook_oldest = Gauge("dialer_webhook_oldest_undelivered_seconds",
                                    "Age of the oldest webhook message not delivered yet (0: none)", registry=r)

    def _in_flight(self, per_batch: dict[str, int], total: int) -> None:
        """Calls in flight per batch and on the account (batches with none are dropped); only the gauges whose
        value changed are touched (thousands of batches may hold slots)."""
        shown = self._slots_shown
        for batch in [b for b in shown if b not in per_batch]:
            self.in_flight.remove(batch)
            del shown[batch]
        for batch, n in per_batch.items():
            if shown.get(batch) != n:
                self.in_flight.labels(batch).set(n)
                shown[batch] = n
        self.account_in_flight.set(total)

    async def refresh(self, repos, now) -> None:
        """Before a scrape: the calls in flight per batch (one read of the slot ledger: what every process
        sees, at the scrape, not a dispatcher's periodic count), the waiting calls of each running batch (one
        counters read per batch)."""
        slots = await repos.ledger.read()
        self._in_flight({b.hex(): n for b, n in slots.flying.by_binary.items()}, slots.flying.total)
        batches = await repos.batches.runnable(now)
        tallies = await repos.calls.tallies_many([b["_id"] for b in batches])
        self.waiting.clear()
        for batch_id, t in tallies.items():
            self.waiting.labels(str(batch_id)).set(counters_view(t)["waiting"])
        oldest = await repos.webhooks.oldest_pending()
        self.webhook_oldest.set(max(0.0, (now - oldest).total_seconds()) if oldest else 0)

    def text(self) -> bytes:
        return generate_latest(self.registry)
