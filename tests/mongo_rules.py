"""A MongoDB server's rules around the mongomock collections the MongoDB repositories hold.

mongomock answers every query at once, ignores index hints and never fails part of a write. `RulesDb`
wraps a mongomock database (`mongo_repositories(client, RulesDb(...))`) so that each collection the
repositories take from it is a `Rules`, which adds what a real server does and they must cope with:

- Time. An operation costs `per_doc` simulated seconds per document or index key it examines, and
  fails with ExecutionTimeout (MaxTimeMSExpired, code 50) when that exceeds the timeout in force: the
  one set by `pymongo.timeout(...)` around it, else the client's timeoutMS (`client_timeout`), as
  PyMongo applies them (`pymongo.timeout(None)` falls back to the client's). A multi-document update
  that runs out of time has applied its first documents, as the server's does. What an operation
  examines follows a plain planner: the hinted index, else, of the declared indexes (indexes.py) with a
  prefix of fields the filter bounds (a value, $in or a range), the one whose bounds hold fewest keys,
  else the whole collection; keys are walked in index order until `limit` documents match, or all of
  them when the sort asked for is not the index's order. Building indexes examines every document. Each operation
  is timed on its own; with `per_doc` 0 nothing is timed (set it once the test's data is written).
- Hints. A hint naming no declared index is refused (OperationFailure, code 2), as the server does.
- Faults. `faults["bulk_write"]` and `faults["update_many"]`, one entry per call (consumed in order;
  None: no fault): an exception raised before anything is applied, `After(exc)` raised once the whole
  write was applied (a timeout whose outcome the client cannot know), or (bulk writes) `Refuse(pick)`,
  a BulkWriteError for the ops `pick(op)` chooses, the others applied.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable

from bson import ObjectId
from mongomock.filtering import filter_applies
from mongomock.helpers import patch_datetime_awareness_in_document
from pymongo import _csot
from pymongo.errors import BulkWriteError, ExecutionTimeout, OperationFailure

from dialer.store.mongo.indexes import INDEXES

BOUNDING = {"$eq", "$in", "$gt", "$gte", "$lt", "$lte"}
ID_INDEX = {"name": "_id_", "key": {"_id": 1}}


@dataclass
class After:
    """Raise `error` after the write was applied in full."""

    error: Exception


@dataclass
class Refuse:
    """A BulkWriteError for the ops `pick` chooses (with `code`); the others are applied."""

    pick: Callable[[Any], bool]
    code: int = 2


def filter_of(op: Any) -> dict:
    """The filter of a PyMongo UpdateOne (to pick ops by the document they touch)."""
    return op._filter


def _bounds(cond: Any) -> bool:
    if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
        return bool(BOUNDING & set(cond))
    return True


def _value(doc: dict, path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _order(value: Any) -> tuple:
    """BSON's comparison order across the types the calls hold."""
    rank = {type(None): 1, int: 2, float: 2, str: 3, dict: 4, list: 5, ObjectId: 7, bool: 8, dt.datetime: 9}
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    comparable = isinstance(value, (int, float, str, ObjectId, bool, dt.datetime))
    return (rank.get(type(value), 10), value if comparable else 0)


class Rules:
    def __init__(self, inner: Any, name: str, per_doc: float, client_timeout: float) -> None:
        self.inner = inner
        self.name = name
        self.per_doc = per_doc
        self.client_timeout = client_timeout
        self.indexes = [ID_INDEX] + [{"name": m.document["name"], "key": dict(m.document["key"]),
                                      "partial": "partialFilterExpression" in m.document}
                                     for m in INDEXES.get(name, [])]
        self.faults: dict[str, list] = {"bulk_write": [], "update_many": []}
        self.examined: list[int] = []  # per timed operation, for tests that look at costs

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    # ---- time ----------------------------------------------------------------------------------
    def _budget(self) -> float | None:
        timeout = _csot.get_timeout()
        timeout = self.client_timeout if timeout is None else timeout
        return timeout or None  # 0: no limit

    def _charge(self, examined: int) -> None:
        self.examined.append(examined)
        budget = self._budget()
        if budget is not None and examined * self.per_doc > budget:
            raise ExecutionTimeout("operation exceeded time limit", 50)

    async def _plan(self, flt: dict, hint: Any) -> dict | None:
        if hint is not None:
            for index in self.indexes:
                if hint == index["name"] or (not isinstance(hint, str) and dict(hint) == index["key"]):
                    return index
            raise OperationFailure("hint provided does not correspond to an existing index", 2)
        best, best_rank = None, None
        for index in self.indexes:
            prefix = self._prefix(index, flt)
            if prefix and not index.get("partial"):
                # The planner's trial keeps the plan that meets fewest keys (ties: the most bounded).
                rank = (await self.inner.count_documents({f: flt[f] for f in prefix}), -len(prefix))
                if best_rank is None or rank < best_rank:
                    best, best_rank = index, rank
        return best

    @staticmethod
    def _prefix(index: dict, flt: dict) -> list[str]:
        out = []
        for field in index["key"]:
            if field not in flt or not _bounds(flt[field]):
                break
            out.append(field)
        return out

    async def _walk(self, flt: dict, sort: list | None, limit: int, hint: Any) -> tuple[int, list[tuple[int, Any]]]:
        """(keys examined, the matching documents' ids in the order the plan meets them, each with how
        many keys had been examined when it was met). Nothing is examined when documents cost nothing."""
        flt = flt or {}
        if not self.per_doc:
            if hint is not None:
                await self._plan(flt, hint)  # a bad hint is refused all the same
            return 0, []
        index = await self._plan(flt, hint)
        fields = set(index["key"] if index else ()) | {f for f in flt if not f.startswith("$")}
        projection = None if any(f.startswith("$") for f in flt) else {f: 1 for f in fields}
        prefix = {f: flt[f] for f in self._prefix(index, flt)} if index else {}
        candidates = await self.inner.find(prefix, projection).to_list(None)
        if index is not None:
            candidates.sort(key=lambda d: tuple(_order(_value(d, f)) for f in index["key"]))
        if sort and not self._gives_order(index, flt, sort):
            limit = 0  # a blocking sort reads every candidate first
        examined, hits, stored = 0, [], patch_datetime_awareness_in_document(flt)  # as mongomock keeps them
        for doc in candidates:
            examined += 1
            if filter_applies(stored, doc):
                hits.append((examined, doc["_id"]))
                if limit and len(hits) == limit:
                    break
        return examined, hits

    def _gives_order(self, index: dict | None, flt: dict, sort: list) -> bool:
        if index is None:
            return False
        rest = [f for f in index["key"] if not (f in flt and not isinstance(flt[f], dict))]  # after equalities
        return [f for f, _ in sort] == rest[:len(sort)]

    # ---- operations ----------------------------------------------------------------------------
    def find(self, flt: dict | None = None, projection: dict | None = None, **kwargs: Any) -> "RulesCursor":
        return RulesCursor(self, flt or {}, projection, kwargs)

    async def update_many(self, flt: dict, update: dict, **kwargs: Any) -> Any:
        fault = self._fault("update_many")
        if isinstance(fault, Exception):
            raise fault
        examined, hits = await self._walk(flt, None, 0, kwargs.get("hint"))
        budget = self._budget()
        if budget is not None and examined * self.per_doc > budget:
            affordable = budget / self.per_doc  # the documents met before the time ran out are updated
            done = [i for at, i in hits if at <= affordable]
            if done:
                await self.inner.update_many({"$and": [flt, {"_id": {"$in": done}}]}, update)
        self._charge(examined)
        result = await self.inner.update_many(flt, update, **kwargs)
        if isinstance(fault, After):
            raise fault.error
        return result

    async def aggregate(self, pipeline: list[dict], **kwargs: Any) -> Any:
        first = pipeline[0].get("$match", {}) if pipeline else {}
        examined, _ = await self._walk(first, None, 0, kwargs.pop("hint", None))
        self._charge(examined)
        return self.inner.aggregate(pipeline, **kwargs)

    async def create_indexes(self, models: list, **kwargs: Any) -> Any:
        self._charge(await self.inner.count_documents({}))
        return await self.inner.create_indexes(models, **kwargs)

    def _fault(self, method: str) -> Any:
        return self.faults[method].pop(0) if self.faults[method] else None

    async def bulk_write(self, ops: list, ordered: bool = True, **kwargs: Any) -> Any:
        fault = self._fault("bulk_write")
        if isinstance(fault, Exception):
            raise fault
        if isinstance(fault, Refuse):
            picked = [i for i, op in enumerate(ops) if fault.pick(op)]
            kept = [op for i, op in enumerate(ops) if i not in picked]
            result = await self.inner.bulk_write(kept, ordered=False) if kept else None
            raise BulkWriteError({
                "writeErrors": [{"index": i, "code": fault.code, "errmsg": "refused by the test"} for i in picked],
                "writeConcernErrors": [], "nInserted": result.inserted_count if result else 0, "nUpserted": 0,
                "nMatched": result.matched_count if result else 0, "nModified": result.modified_count if result else 0,
                "nRemoved": 0, "upserted": []})
        result = await self.inner.bulk_write(ops, ordered=ordered, **kwargs)
        if isinstance(fault, After):
            raise fault.error
        return result


class RulesCursor:
    """find(...).sort(...).limit(...).skip(...).hint(...), timed when read."""

    def __init__(self, rules: Rules, flt: dict, projection: dict | None, kwargs: dict) -> None:
        self.rules, self.flt, self.projection, self.kwargs = rules, flt, projection, kwargs
        self._sort: list | None = None
        self._limit = self._skip = 0
        self._hint: Any = None

    def sort(self, key: Any, direction: int = 1) -> "RulesCursor":
        self._sort = [(key, direction)] if isinstance(key, str) else list(key)
        return self

    def limit(self, n: int) -> "RulesCursor":
        self._limit = n
        return self

    def skip(self, n: int) -> "RulesCursor":
        self._skip = n
        return self

    def hint(self, index: Any) -> "RulesCursor":
        self._hint = index
        return self

    async def to_list(self, length: int | None = None) -> list[dict]:
        wanted = self._limit + self._skip if self._limit else 0
        examined, _ = await self.rules._walk(self.flt, self._sort, wanted, self._hint)
        self.rules._charge(examined)
        cursor = self.rules.inner.find(self.flt, self.projection, **self.kwargs)
        if self._sort:
            cursor = cursor.sort(self._sort)
        if self._skip:
            cursor = cursor.skip(self._skip)
        if self._limit:
            cursor = cursor.limit(self._limit)
        return await cursor.to_list(length)

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        for doc in await self.to_list(None):
            yield doc


class RulesDb:
    """A mongomock database whose collections follow a server's rules (one `Rules` per name)."""

    def __init__(self, db: Any, per_doc: float = 0.01, client_timeout: float = 30.0) -> None:
        self.db = db
        self.per_doc = per_doc
        self.client_timeout = client_timeout
        self.collections: dict[str, Rules] = {}

    def __getitem__(self, name: str) -> Rules:
        if name not in self.collections:
            self.collections[name] = Rules(self.db[name], name, self.per_doc, self.client_timeout)
        return self.collections[name]


async def rules_repositories(per_doc: float = 0.01, client_timeout: float = 30.0) -> tuple[Any, RulesDb]:
    """The MongoDB repositories on a fresh mongomock database under these rules, and that database."""
    from dialer.store.mongo import mongo_repositories
    from dialer.store.mongo.testing import mongomock_client

    client = mongomock_client()
    db = RulesDb(client["dialer"], per_doc, client_timeout)
    return await mongo_repositories(client, db, kind="mongomock"), db
