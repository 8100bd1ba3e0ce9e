"""Use cases, free of HTTP: ingestion, tenancy, batches, calls, call events, idempotency."""
