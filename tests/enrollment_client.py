"""Helpers for the enrollment face's tests: posting a request as a partner does, reading raw answers."""

from __future__ import annotations

from typing import Any

import orjson

from dialer.api.appkeys import ENROLLMENT


def path(agent_id: Any) -> str:
    return f"/api/v1/agents/{agent_id}/schedule/sequences"


async def enroll(api, body: Any, *, agent_id: Any = None, key: str | None = None, idem: str | None = None,
                 raw: bytes | None = None) -> tuple[int, dict, bytes, Any]:
    """(status, parsed body, raw bytes, headers). Background scheduling has finished when it returns."""
    headers = {"x-api-key": key or api.key, "Content-Type": "application/json"}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    resp = await api.client.post(path(agent_id or api.agent["_id"]), headers=headers,
                                 data=raw if raw is not None else orjson.dumps(body))
    data = await resp.read()
    await api.app[ENROLLMENT].close()  # let the accepted contacts be scheduled
    return resp.status, orjson.loads(data), data, resp.headers


async def batch_of(api, batch_id: str) -> dict:
    code, doc = await api.get(f"/api/call/batches/{batch_id}")
    assert code == 200, doc
    return doc["data"]


def contact(phone: str, **fields: Any) -> dict:
    return {"phoneNumber": phone, **fields}
