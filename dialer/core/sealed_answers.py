"""What the store may hold of an Idempotency-Key: the record's name and its answer, sealed.

A record is named `<owner>:<SHA-256 hex of the key>` (`record_id`), never by the key itself. The answer a
retry replays (its text and headers, which may carry a new API key or a webhook signing secret) is sealed
with AES-256-GCM under a key derived from the Idempotency-Key with HKDF-SHA256 (`seal`, `unseal`): the
store never holds what opens it. The derivation binds the owner and a purpose string of its own (HKDF's
info), so the cipher key is neither the record's hash nor the key of another owner's record. The record's
scope, fingerprint and code stay readable (none of them holds a secret) and are bound to the answer as
associated data: an answer moved to another record, or a record whose code, scope or fingerprint was
changed, does not open (`Unreadable`), nor does an answer tried with another Idempotency-Key.

What a leaked store reveals: the records' scopes, codes and times, and SHA-256 hashes of the keys. A key
that can be guessed (a counter, a date, a short word) can be found from its hash and then opens its
answer: use keys of 128 random bits (UUIDs).

`from_legacy` converts a record of the older format (`<owner>:<key>` in plain, the answer in plain) for
the upgrades of both stores (dialer/store/sqlite/schema.py, dialer/store/mongo/idempotency.py).

Pure: no I/O; the answer's bytes are sealed on the caller's thread (AES-GCM runs at gigabytes a second).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = 2  # a record's `format`: named by the key's hash, its answer sealed (records of the first have none)
ALGORITHM = "A256GCM+HKDF-SHA256/1"  # stored beside each sealed answer: a later format can tell its own
SALT = b"dialer idempotency answer"
PURPOSE = b"seals the answer replayed for an Idempotency-Key\x00owner="
NONCE_BYTES = 12


class Unreadable(Exception):
    """A stored answer that does not open under this key: altered, moved from another record, or not sealed."""


def key_hash(key: str) -> str:
    """The SHA-256 hex of an Idempotency-Key (printable ASCII, checked before)."""
    return hashlib.sha256(key.encode()).hexdigest()


def record_id(owner: str, key: str) -> str:
    return f"{owner}:{key_hash(key)}"


def _cipher(owner: str, key: str) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT,
                   info=PURPOSE + owner.encode()).derive(key.encode())
    return AESGCM(derived)


def _bound(scope: Any, fingerprint: Any, code: int) -> bytes:
    """The associated data: what the answer belongs to, unambiguously encoded."""
    return orjson.dumps([scope, fingerprint, code])


def seal(owner: str, key: str, scope: Any, fingerprint: Any, code: int, text: str,
         headers: dict[str, str]) -> dict:
    """The stored form of an answer (the record's `body`): {alg, nonce, sealed}."""
    nonce = os.urandom(NONCE_BYTES)
    plain = orjson.dumps({"text": text, "headers": {str(name): str(value) for name, value in headers.items()}})
    return {"alg": ALGORITHM, "nonce": nonce,
            "sealed": _cipher(owner, key).encrypt(nonce, plain, _bound(scope, fingerprint, code))}


def unseal(owner: str, key: str, scope: Any, fingerprint: Any, code: Any, body: Any) -> tuple[str, dict[str, str]]:
    """(text, headers) of a stored answer; Unreadable when it does not open (the message says why, never
    what the record holds)."""
    if not isinstance(body, dict) or body.get("alg") != ALGORITHM:
        raise Unreadable("the answer is not sealed in a known format")
    nonce, sealed = body.get("nonce"), body.get("sealed")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES or not isinstance(sealed, bytes) \
            or not isinstance(code, int):
        raise Unreadable("the sealed answer is malformed")
    try:
        plain = _cipher(owner, key).decrypt(nonce, sealed, _bound(scope, fingerprint, code))
    except InvalidTag:
        raise Unreadable("the sealed answer does not open under this key") from None
    try:
        answer = orjson.loads(plain)
        text, headers = answer["text"], answer["headers"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise Unreadable("the sealed answer is malformed") from None
    return text, headers


def from_legacy(doc: dict) -> dict | None:
    """A record of the older format (`_id` "<owner>:<key>", `body` {text, headers} in plain) in this one:
    named by the key's hash, its answer sealed; None for one that cannot be (no owner in its id, or a
    finished record without a readable answer: a retry with its key runs afresh)."""
    owner, colon, key = str(doc.get("_id", "")).partition(":")
    if not colon or not owner or not key:
        return None
    new = {name: value for name, value in doc.items() if name not in ("_id", "body")}
    new.update(_id=record_id(owner, key), format=FORMAT)
    if doc.get("state") != "done":
        return new
    body, code = doc.get("body"), doc.get("code")
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) \
            or not isinstance(body.get("headers"), dict) or not isinstance(code, int):
        return None
    new["body"] = seal(owner, key, doc.get("scope"), doc.get("fingerprint"), code, body["text"], body["headers"])
    return new
