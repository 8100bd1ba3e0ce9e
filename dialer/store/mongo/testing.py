"""The MongoDB repositories' test double: mongomock-motor, with the fixes it needs to stand in for a server.

Not used at run time (the embedded store is dialer/store/sqlite); the contract suite and the tests
of this module run the MongoDB repositories on it. mongomock 4.3.0 has two problems for us, both
handled here and tested in tests/test_mongomock_double.py:

1. With PyMongo >= 4.11, `bulk_write([UpdateOne(...)])` raises `TypeError: add_update() got an
   unexpected keyword argument 'sort'` (mongomock issue #912, fix unreleased). We accept `sort=None`,
   the value PyMongo passes when no sort is asked for, and refuse any other value loudly.
2. It has no indexes: every query tests every document, `$in` with k values costs N*k, and every
   insert into a collection with a unique index rescans the whole collection. We add a candidate
   pre-filter: top-level `_id` lookups go straight to the document dict, and top-level equality or
   `$in` on plain strings / ObjectIds / ints is checked with a set before mongomock's full matcher
   runs on the survivors. The matcher still decides; the pre-filter only skips documents that cannot
   match.
"""

from __future__ import annotations

from typing import Any

import mongomock.collection as mm_collection
from bson import ObjectId
from mongomock.filtering import filter_applies
from mongomock_motor import AsyncMongoMockClient

from dialer.ports import Repositories

_PATCHED = False
_FAST_TYPES = (str, ObjectId)


def _accept_unsorted(original):
    def wrapper(self, *args, sort=None, **kwargs):
        if sort is not None:
            raise NotImplementedError("the in-memory MongoDB does not support sort in bulk updates")
        return original(self, *args, **kwargs)

    return wrapper


def _fast_value(value: Any) -> bool:
    return isinstance(value, _FAST_TYPES) or (isinstance(value, int) and not isinstance(value, bool))


def _terms(flt: dict) -> list[tuple[str, frozenset]]:
    """Top-level `field: scalar` and `field: {"$in": [scalars]}` terms usable for pre-filtering."""
    terms = []
    for field, cond in flt.items():
        if field.startswith("$") or "." in field:
            continue
        if _fast_value(cond):
            terms.append((field, frozenset([cond])))
        elif isinstance(cond, dict) and set(cond) == {"$in"} and isinstance(cond["$in"], (list, tuple)):
            values = cond["$in"]
            if values and all(_fast_value(v) for v in values):
                terms.append((field, frozenset(values)))
    return terms


def _may_match(doc: dict, terms: list[tuple[str, frozenset]]) -> bool:
    for field, allowed in terms:
        value = doc.get(field)
        if isinstance(value, (list, dict)):
            continue  # array / sub-document semantics: leave it to the full matcher
        if value not in allowed:
            return False
    return True


def _decided(doc: dict, terms: list[tuple[str, frozenset]]) -> bool:
    """True when the pre-filter alone decides the match: every field holds a plain string, ObjectId or
    int (not bool, which Python equates with 1 and MongoDB does not)."""
    return all(_fast_value(doc.get(field)) for field, _ in terms)


def _iter_documents(self, flt):
    store = self._store
    if store.is_empty:
        filter_applies(flt, {})  # mongomock validates the filter even on an empty collection
        return iter(())
    terms = _terms(flt) if isinstance(flt, dict) else []
    id_terms = [allowed for field, allowed in terms if field == "_id"]
    if id_terms:
        candidates = [store[i] for i in id_terms[0] if i in store]
        candidates = [d for d in candidates if _may_match(d, terms)]
    else:
        docs = list(store.documents)
        candidates = [d for d in docs if _may_match(d, terms)] if terms else docs
    if terms and len(terms) == len(flt):
        # Every condition is a pre-filter term: skip mongomock's matcher where the terms decided.
        return (doc for doc in candidates if _decided(doc, terms) or filter_applies(flt, doc))
    return (doc for doc in candidates if filter_applies(flt, doc))


def patch_mongomock() -> None:
    """Apply the fixes once per process (they are semantics-preserving)."""
    global _PATCHED
    if _PATCHED:
        return
    builder = mm_collection.BulkOperationBuilder
    builder.add_update = _accept_unsorted(builder.add_update)
    builder.add_replace = _accept_unsorted(builder.add_replace)
    mm_collection.Collection._iter_documents = _iter_documents
    _PATCHED = True


def mongomock_client() -> AsyncMongoMockClient:
    patch_mongomock()
    return AsyncMongoMockClient()


async def mongomock_repositories(database: str = "dialer") -> Repositories:
    """The MongoDB repositories on a fresh mongomock database, indexes created."""
    from dialer.store.mongo import mongo_repositories

    client = mongomock_client()
    return await mongo_repositories(client, client[database], kind="mongomock")
