"""CallRepo.held_provider_ids: which provider calls some call of the store already carries, so that the reaper
never gives one to another call found at the provider by number (two extensions of one number, a duplicate,
another batch calling the number)."""

from __future__ import annotations

from dialer.ports import Finish, PlacedRecord

from tests.contract.conftest import at, batch_doc, claim, enqueue, planned

A, B, C, D = "+14155550001", "+14155550002", "+14155550003", "+14155550004"


def finish(outcome: str, **kw) -> Finish:
    return Finish(final=outcome, outcome=outcome, entry={"at": at(30), "event": outcome}, **kw)


async def test_nothing_asked_nothing_held(repos, batch):
    assert await repos.calls.held_provider_ids([]) == set()
    assert await repos.calls.held_provider_ids(["CA-unknown"]) == set()


async def test_ids_carried_by_calls_in_flight_or_final_are_held_whatever_their_batch(repos, batch):
    other = batch_doc()
    await repos.batches.insert(other)
    a, b, c, d = await enqueue(repos, batch, planned(A), planned(B, extension="22"), planned(B, extension="23"),
                               planned(D))
    [e] = await enqueue(repos, other, planned(C))
    for call in (a, b, c, d, e):
        assert await claim(repos, call)
    await repos.calls.record_placed([PlacedRecord(a, "tok-1", "CA-a", at(1), at(200))])  # the placer's record
    assert await repos.calls.record_provider_id(b, "tok-1", "CA-b", None)  # a callback, or the reaper, found it
    assert await repos.calls.progress(e, "tok-1", "CA-e", "ringing", at(200), {"at": at(2), "event": "ringing"},
                                      None, at(2))
    assert await repos.calls.finish(d, "tok-1", "CA-d", finish("completed", provider_call_id="CA-d"), at(30))
    asked = ["CA-a", "CA-b", "CA-c", "CA-d", "CA-e", "CA-never"]
    assert await repos.calls.held_provider_ids(asked) == {"CA-a", "CA-b", "CA-d", "CA-e"}
    assert await repos.calls.held_provider_ids(iter(["CA-b", "CA-b", "CA-x"])) == {"CA-b"}  # any iterable, once each
    assert (await repos.calls.get(c)).get("providerCallId") is None  # c, dialing without one, holds nothing


async def test_an_id_a_retry_forgot_is_no_longer_held(repos, batch):
    """A call put back in the queue for a retry keeps its earlier provider id only in its history: the port
    says so (no index reaches into histories)."""
    [a] = await enqueue(repos, batch, planned(A))
    assert await claim(repos, a)
    await repos.calls.record_placed([PlacedRecord(a, "tok-1", "CA-1", at(1), at(200))])
    assert await repos.calls.held_provider_ids(["CA-1"]) == {"CA-1"}
    await repos.calls.finish(a, "tok-1", "CA-1", finish("busy", retry_at=at(300), max_attempts=2), at(30))
    assert (await repos.calls.get(a))["status"] == "queued"
    assert await repos.calls.held_provider_ids(["CA-1"]) == set()
