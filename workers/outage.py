"""Logging a store outage as an operator wants to read it: one line when it starts, one a minute while it lasts
(with how long so far and how many failures), one when it ends, never a traceback per poll. A dispatcher polls
several times a second; a full disk or a lost MongoDB primary made it log a traceback for each poll.
"""

from __future__ import annotations

import logging
import time
from typing import Callable


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
