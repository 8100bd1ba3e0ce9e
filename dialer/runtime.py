"""Process-wide runtime tuning, applied once by each process's entry point (`dialer serve`, `dialer worker`)."""

import gc

# A 100,000-record request keeps over a million small objects alive while it is validated; with
# CPython's default thresholds the collector walks them all about eight times per request (~12% of
# ingestion time in bench/ingest). Collect young objects less often; the engine builds few cycles.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
