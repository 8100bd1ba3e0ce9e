"""The one error a use case raises to refuse a request: an answer code (the seed's `code`: 400, 403,
404, 409, 413, 503 ...), a short message, a reason safe to show, and optional details. The API maps it
onto its envelope (or a vendor face onto its own shape); use cases never see HTTP."""

from __future__ import annotations

from typing import Any


class Refused(Exception):
    def __init__(self, code: int, message: str, error: str | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.error = error or message
        self.data = data
