"""Standard Webhooks signatures: `v1,` + base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`
keyed with the secret's bytes (`whsec_` + base64). While a rotated-out secret is still valid (24 h) the
header carries both signatures, space-separated, so a partner verifying with either secret accepts."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(endpoint: dict, message_id: str, timestamp: int, body: bytes, now: dt.datetime) -> str:
    secrets = [endpoint["secret"]]
    if endpoint.get("previousSecret") and endpoint.get("previousUntil") and now < endpoint["previousUntil"]:
        secrets.append(endpoint["previousSecret"])
    return " ".join(sign(s, message_id, timestamp, body) for s in secrets)
