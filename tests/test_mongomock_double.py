"""The MongoDB test double's fixes: bulk updates work, and the pre-filter never changes a query's answer."""

from __future__ import annotations

import random

import mongomock
import pytest
from bson import ObjectId
from mongomock.filtering import filter_applies
from pymongo import InsertOne, UpdateOne

from dialer.store.mongo.testing import _iter_documents, mongomock_client, patch_mongomock


async def test_bulk_write_with_update_one_works():
    client = mongomock_client()
    col = client.db.calls
    await col.insert_one({"_id": 1, "a": 1})
    result = await col.bulk_write([UpdateOne({"_id": 1}, {"$set": {"a": 2}}), InsertOne({"_id": 2})], ordered=False)
    assert result.modified_count == 1 and result.inserted_count == 1
    assert (await col.find_one({"_id": 1}))["a"] == 2


def test_a_real_sort_in_a_bulk_update_is_refused_loudly():
    patch_mongomock()
    builder = mongomock.collection.BulkOperationBuilder
    with pytest.raises(NotImplementedError):
        builder.add_update(None, {"a": 1}, {"$set": {"a": 1}}, sort={"a": 1})


QUERIES = [
    {"_id": "ID3"},
    {"_id": {"$in": ["ID1", "ID5", "nope"]}},
    {"batchId": "b1"},
    {"batchId": "b1", "status": {"$in": ["queued", "held"]}},
    {"status": "queued", "n": {"$gte": 10}},
    {"tags": "x"},  # array field: element match
    {"tags": {"$in": ["y", "z"]}},
    {"missing": None},
    {"n": 3},
    {"n": {"$in": [1, 3]}},
    {"n": 1, "batchId": "b1"},
    {"_id": {"$in": ["ID1", "ID2", "ID3", "ID4"]}, "status": "queued"},
    {"n": True},  # bool is not 1
    {"oid": {"$in": []}},
    {"$or": [{"batchId": "b2"}, {"n": 1}]},
    {"sub.k": "v"},
]


def _docs():
    rng = random.Random(3)
    docs = []
    for i in range(60):
        doc = {"_id": f"ID{i}", "batchId": rng.choice(["b1", "b2", "b3"]), "status": rng.choice(["queued", "held", "done"]),
               "n": rng.choice([0, 1, 3, 10, 20, True, 3.0]), "oid": ObjectId()}
        if i % 5 == 0:
            doc["tags"] = rng.sample(["x", "y", "z"], 2)
        if i % 7 == 0:
            doc["tags"] = "x"
        if i % 4 == 0:
            doc["sub"] = {"k": rng.choice(["v", "w"])}
        docs.append(doc)
    return docs


@pytest.mark.parametrize("query", QUERIES, ids=[str(q) for q in QUERIES])
def test_prefilter_gives_the_same_answer_as_plain_mongomock(query):
    patch_mongomock()
    col = mongomock.MongoClient().db.c
    col.insert_many(_docs())
    patched = sorted(d["_id"] for d in _iter_documents(col, query))
    expected = sorted(d["_id"] for d in col._store.documents if filter_applies(query, d))  # mongomock's own matcher
    assert patched == expected
