"""Structured logs: one JSON object per line, with batch and call ids as fields; secrets never logged. And how a
store outage is logged (`Outage`): one line when it starts, one a minute while it lasts, one when it ends, never a
traceback per poll (a dispatcher polls several times a second; a full disk made it log one at each)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_SECRET_FIELDS = {"apiKey", "authToken", "token", "password", "authorization", "x-api-key"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = "<redacted>" if key in _SECRET_FIELDS else value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("twilio").setLevel(logging.WARNING)


class Outage:
    def __init__(self, log: logging.Logger, what: str, every: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.what = what
        self.every = every
        self.clock = clock
        self.since: float | None = None
        self._logged = 0.0
        self.failures = 0

    def failed(self, error: BaseException, **extra: object) -> None:
        now = self.clock()
        self.failures += 1
        if self.since is None:
            self.since, self._logged = now, now
            self.log.error(f"{self.what}: the store is unavailable; retrying at each interval",
                           extra={**extra, "error": str(error)})
        elif now - self._logged >= self.every:
            self._logged = now
            self.log.error(f"{self.what}: the store is still unavailable",
                           extra={**extra, "error": str(error), "seconds": round(now - self.since, 1),
                                  "failures": self.failures})

    def ok(self, **extra: object) -> None:
        if self.since is None:
            return
        self.log.warning(f"{self.what}: the store is available again",
                         extra={**extra, "seconds": round(self.clock() - self.since, 1), "failures": self.failures})
        self.since, self.failures = None, 0
