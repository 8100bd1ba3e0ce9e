"""CallRepo: the calls of every batch (enqueue, the dispatcher's reads and claims, events, operators' pages,
contact chaining), and the values its methods take and return."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Protocol

from bson import ObjectId

from dialer.core.records import PlannedCall
from dialer.ports.slots import LedgerState, LedgerWrite


def active_key(batch_id: ObjectId, e164: str, extension: str | None) -> str:
    """At most one waiting or in-flight call per callee of a batch. An extension is part of the
    callee: two extensions behind one number are two people."""
    return f"{batch_id}:{e164}" + (f";ext={extension}" if extension else "")


def line_key(workspace_id: ObjectId, e164: str, extension: str | None) -> str:
    """At most one call in flight per callee of a workspace, whatever its batch (invariant 3): the same person in
    two batches is called once at a time. An extension is part of the callee, as for `active_key`."""
    return f"{workspace_id}:{e164}" + (f";ext={extension}" if extension else "")


BUSY_WAIT = dt.timedelta(seconds=30)  # a claimed callee in another call of its workspace is tried again this late


@dataclass
class ChunkResult:
    """What `CallRepo.enqueue` wrote for one chunk (docs/api.md, "Enqueueing rules")."""

    call_ids: list[str] = field(default_factory=list)  # inserted or updated, in the chunk's order
    inserted: int = 0
    updated: int = 0
    in_flight: list[dict] = field(default_factory=list)  # {phoneNumber, callId, status}: not touched
    error: str | None = None  # set when (part of) the chunk was not written; call_ids say what was


@dataclass(frozen=True)
class Claim:
    """queued -> dialing for one call: the dispatcher's claim under a slot reservation."""

    call_id: ObjectId
    token: str  # the reservation's token, written as claimToken (pins later writes to this attempt)
    by: str  # the dispatcher's name (claimedBy)
    dial_at: dt.datetime
    lease_until: dt.datetime
    line: str | None = None  # the callee's line_key: not claimed while the callee is in another call
    # (batchId, outcome, attempts) of the call as the due read saw it: written as the claim's condition, so a
    # claim that lands knows what it changed (the batch's counters) without reading the call back.
    seen: tuple[ObjectId, str | None, int] | None = None


@dataclass
class ClaimResult:
    """What a claim's write landed, and what was read after it in its own unit of work (`CallRepo.claim`)."""

    reserved: bool = True  # False: the ledger's compare-and-set asked for failed, and nothing was written
    won: set[ObjectId] = field(default_factory=set)  # the calls whose claim landed
    # Of the batches asked about, those runnable now: {batch: (updatedAt, enqueuedAt)}, as BatchRepo.runnable_stamps.
    running: dict[ObjectId, tuple] = field(default_factory=dict)
    listed: dict[tuple[ObjectId, str], dict] = field(default_factory=dict)  # as DncRepo.listed, of the numbers asked


@dataclass(frozen=True)
class PlacedRecord:
    """The provider accepted the call: record its id onto the attempt that placed it."""

    call_id: ObjectId
    token: str
    provider_call_id: str
    at: dt.datetime
    lease_until: dt.datetime  # the lease becomes at least this


def placed_entry(at: dt.datetime, provider_call_id: str) -> dict:
    """A placement in a call's history: written with its record, or by its end when that came first."""
    return {"at": at, "event": "placed", "providerCallId": provider_call_id}


@dataclass(frozen=True)
class Tally:
    """Calls of a batch with one (status, outcome): how many, how many were ever dialled, their attempts."""

    status: str
    outcome: str | None
    calls: int
    dialled: int
    attempts: int


def difference(actual: list[Tally], kept: list[Tally]) -> list[Tally]:
    """actual - kept, per (status, outcome); empty when they agree."""
    totals: Counter = Counter()
    for sign, tallies in ((1, actual), (-1, kept)):
        for t in tallies:
            for i, n in enumerate((t.calls, t.dialled, t.attempts)):
                totals[(t.status, t.outcome, i)] += sign * n
    pairs = sorted({(s, o) for s, o, _ in totals}, key=lambda p: (p[0], p[1] or ""))
    delta = [Tally(s, o, totals[(s, o, 0)], totals[(s, o, 1)], totals[(s, o, 2)]) for s, o in pairs]
    return [t for t in delta if (t.calls, t.dialled, t.attempts) != (0, 0, 0)]


@dataclass(frozen=True)
class Finish:
    """An in-flight call's outcome. With `retry_at` and attempts below `max_attempts` the call goes
    back to the queue (status queued, outcome kept, provider id forgotten); else it becomes `final`."""

    final: str  # the terminal CallStatus value
    outcome: str  # completed | busy | no_answer | failed | cancelled | machine
    entry: dict  # history entry; `result` is added ("retry" or the outcome)
    retry_at: dt.datetime | None = None
    max_attempts: int = 1
    duration: int | None = None
    provider_call_id: str | None = None  # recorded with the final state when given


class CallRepo(Protocol):
    # Whether the kept tallies change in the same transaction as the calls they count (SQLite: triggers), so
    # no crash can leave them off and the reconciliation has nothing to recount (MongoDB: two writes).
    tallies_exact: bool

    # -- ingestion and reading back
    async def enqueue(self, batch: dict, chunk: list[PlannedCall], now: dt.datetime) -> ChunkResult:
        """Write one chunk by the enqueue rules: no active call for the callee -> a new queued call
        (under the planned call's `call_id` when it has one, else a new id);
        a waiting (queued / held) one -> updated in place (variables replaced, input.phoneNumber,
        extension, timezones, zoneSource refreshed, nextAttemptAt never moved earlier); one in flight
        -> untouched, reported in `in_flight`. Races with other writers are resolved inside; a
        database failure sets `error` (and `call_ids` say exactly what was written)."""

    async def get(self, call_id: ObjectId) -> dict | None: ...

    async def page(self, batch_id: ObjectId, statuses: list[str] | None, after: ObjectId | None,
                   limit: int) -> list[dict]:
        """Calls of the batch in enqueue (_id) order, after `after`, with one of `statuses` if given."""

    async def tallies(self, batch_id: ObjectId) -> list[Tally]:
        """The batch's calls counted by (status, outcome), kept by the transitions themselves: the same
        cost for ten calls or ten million (MongoDB: one read of the batch document)."""

    async def recount(self, batch_id: ObjectId) -> list[Tally]:
        """The tallies computed afresh from the calls (the reconciliation compares them with `tallies`)."""

    async def audit_many(self, batch_ids: list[ObjectId]) -> dict[ObjectId, tuple[list[Tally], list[Tally]]]:
        """For each of these batches (an unknown one: no calls), (the recount, recount minus the kept
        tallies): the reconciliation's look at many batches in one call, from one consistent view where
        the backend has one (SQLite: one read transaction). A backend that cannot see both at once
        (MongoDB) answers no difference for a batch whose tallies moved during the recount. It reads
        every call of these batches: the caller bounds how many calls one call reads."""

    async def correct(self, batch_id: ObjectId, delta: list[Tally]) -> None:
        """Add `delta` (may be negative) to the kept tallies: the reconciliation's repair of drift."""

    # -- the dispatcher
    async def due(self, batch_id: ObjectId, now: dt.datetime, limit: int) -> list[dict]:
        """Up to `limit` queued calls with nextAttemptAt <= now, earliest due first, then first in
        first out (_id). Never walks calls that are not yet due."""

    async def due_many(self, wanted: dict[ObjectId, int], now: dt.datetime
                       ) -> dict[ObjectId, tuple[list[dict], dt.datetime | None]]:
        """`due` for several batches in one read, {batch: up to n}: each batch's due calls and, when fewer
        were due than asked, the earliest nextAttemptAt of its queued calls not yet due (None: none queued)."""

    async def look(self, batch_ids: list[ObjectId] | None, wanted: dict[ObjectId, int], now: dt.datetime,
                   settled: frozenset[str] = frozenset()
                   ) -> tuple[LedgerState, dict[ObjectId, tuple[list[dict], dt.datetime | None]]]:
        """A dispatcher's look before it claims, in one store operation: the slot ledger as
        `SlotLedger.read(batch_ids, settled)` and the due calls of `wanted` as `due_many(wanted, now)` (the batches the
        claim will likely serve, asked before their slots are known). SQLite reads both in one transaction
        (one snapshot); MongoDB runs the two reads at once."""

    async def next_due_at(self, batch_id: ObjectId) -> dt.datetime | None:
        """The earliest nextAttemptAt among the batch's queued calls."""

    async def has_active(self, batch_id: ObjectId) -> bool:
        """Any call of the batch waiting (queued / held) or in flight."""

    async def has_waiting(self, batch_id: ObjectId) -> bool: ...

    async def active_among(self, batch_ids: list[ObjectId]) -> set[ObjectId]:
        """Those of these batches with a call waiting (queued / held) or in flight: `has_active` of several
        batches in one read (the dispatcher's completion of the batches it found with nothing left)."""

    async def holders(self, call_ids: Iterable[ObjectId]) -> dict[ObjectId, tuple[str, str | None]]:
        """(status, claimToken) of each of these calls that exists (what a failed claim write did land)."""

    async def claim(self, claims: list[Claim], deferrals: list[tuple], records: list[PlacedRecord], now: dt.datetime,
                    batch_ids: Iterable[ObjectId] = (), numbers: Iterable[tuple[ObjectId, str]] = (),
                    reservation: LedgerWrite | None = None) -> ClaimResult:
        """With `reservation`, first the slot ledger's compare-and-set (as SlotLedger.write; if another writer came
        first, nothing at all is written: `reserved` False); SQLite writes it in the same transaction as the
        claims, MongoDB just before them (a claim that does not follow is the ledger's grace period's to undo).
        Then one write: the claims (queued -> dialing, attempts + 1; only calls still queued), the
        deferrals (a queued call's nextAttemptAt moved to its window's next opening: `(callId, when)`,
        or `(callId, when, entry)` to add `entry` to its history, as a compliance rule does) and the placed
        records (see `record_placed`); then, after the write has landed and in the same unit of work (SQLite:
        its transaction; MongoDB: reads once the write is acknowledged), the stamps of those of `batch_ids` that
        are runnable and the do-not-call entries of `numbers` ((workspace, number) pairs). The placer places
        the claim on what it read there: a stop or a listing answered before it is seen, and one answered
        after it waits for the claim (`unplaced`, `unplaced_numbers`). A claim whose `line` is in another call
        in flight (or in an earlier claim of this write) is not won: its call waits BUSY_WAIT, its history
        saying `callee_busy` (SQLite: in the transaction; MongoDB: a unique index on the callee of a call in flight)."""

    async def record_placed(self, records: list[PlacedRecord]) -> None:
        """providerCallId onto the attempt that placed it (claimToken matches, status not queued),
        leaseUntil raised to at least the record's, a `placed` history entry."""

    async def requeue_unplaced(self, call_id: ObjectId, token: str | None, when: dt.datetime, entry: dict,
                               provider_error: bool = False) -> bool:
        """dialing -> queued without counting the attempt (attempts - 1), if still this attempt's
        (claimToken) and never placed (no providerCallId); nextAttemptAt = when; claim fields cleared;
        providerErrors + 1 when `provider_error`."""

    async def mark_uncertain(self, call_id: ObjectId, token: str, lease_until: dt.datetime, entry: dict) -> bool:
        """A create that timed out: stays dialing (the call may exist), `uncertain`, lease shortened."""

    async def progress(self, call_id: ObjectId, token: str | None, provider_call_id: str | None, to: str,
                       lease_until: dt.datetime, entry: dict, answered_by: str | None, now: dt.datetime) -> bool:
        """dialing -> ringing, or dialing / ringing -> in_progress (never backwards). With a token, only
        that attempt; with a provider id, only a call with that id or none recorded yet (then it is
        recorded)."""

    async def record_provider_id(self, call_id: ObjectId, token: str | None, provider_call_id: str,
                                 entry: dict | None) -> bool:
        """An in-flight call without a providerCallId gets this one (a callback or the reaper found it)."""

    async def finish(self, call_id: ObjectId, token: str | None, provider_call_id: str | None, finish: Finish,
                     now: dt.datetime) -> tuple[str, ObjectId, dict | None] | None:
        """In flight -> queued (retry) or -> final; the claim fields and activeKey (final only) cleared.
        Returns ("retry" | "final", batchId, the call's chaining `group` or None), or None when the call
        was not in flight as matched."""

    # -- contact chaining (the enrollment face)
    async def insert_new(self, batch: dict, chunk: list[PlannedCall], now: dt.datetime) -> int:
        """Write each planned call under its own `call_id` unless a call with that id exists (a resumed
        intake writes nothing twice): `held` ones held, the others queued, with their `group` and
        activeKey + `key_suffix`. How many were written."""

    async def group(self, batch_id: ObjectId, key: str) -> list[dict]:
        """The calls of one chaining group (`_id, status, outcome, duration, answeredBy, verdict, finishedAt,
        group, nextAttemptAt`)."""

    async def held_groups(self, batch_id: ObjectId, limit: int) -> list[str]:
        """Keys of up to `limit` groups of the batch that have held calls (the reaper's sweep)."""

    async def activate(self, call_id: ObjectId, now: dt.datetime, entry: dict) -> bool:
        """held -> queued (compare-and-set), due at the later of now and its planned nextAttemptAt."""

    async def skip_held(self, batch_id: ObjectId, key: str, now: dt.datetime, entry: dict) -> int:
        """Every held call of the group -> skipped (outcome skipped). How many."""

    async def record_verdict(self, call_id: ObjectId, verdict: dict, now: dt.datetime) -> dict | None:
        """The agent's verdict on the call (`{successful, reason?, at}`) kept on it; the call after, or None."""

    # -- operators (the batch lifecycle)
    async def unplaced(self, batch_id: ObjectId) -> int:
        """How many of the batch's claims have not reached the provider yet (dialing, no providerCallId,
        not uncertain). A stop waits for these to be placed or handed back: the placer checks that the
        batch still runs before it places a claim, and records what it placed at once."""

    async def withdraw(self, batch_id: ObjectId, now: dt.datetime, entry: dict, limit: int) -> int:
        """Up to `limit` waiting (queued / held) calls of the batch -> cancelled. Returns how many."""

    async def unplaced_numbers(self, batch_ids: list[ObjectId]) -> set[str]:
        """The numbers of these batches' claims that have not reached the provider yet (as `unplaced`): a
        do-not-call listing waits for those of its numbers to be placed or stopped."""

    async def suppress_queued(self, call_id: ObjectId, now: dt.datetime, entry: dict) -> bool:
        """queued -> skipped with outcome `suppressed` (a rule forbids ever dialling it: WITHDRAW), `entry`
        ({at, event: "suppressed", rule}) in its history. False if the call was no longer queued."""

    async def in_flight(self, batch_id: ObjectId) -> list[dict]:
        """The batch's calls in flight (at most its concurrency limit)."""

    async def retry_finished(self, batch_id: ObjectId, outcomes: list[str], now: dt.datetime, entry: dict,
                             limit: int) -> tuple[int, int]:
        """Up to `limit` final calls whose outcome is one of `outcomes` -> queued (due now, outcome kept,
        attempts kept: the next claim counts one more), unless the callee already has a call waiting or
        in flight. (retried, skipped); a call is looked at once per `now`, so repeating with the same
        `now` until (0, 0) goes through them all."""

    async def bring_forward(self, batch_id: ObjectId, now: dt.datetime) -> int:
        """Queued calls of the batch due later than now become due now (a scheduled batch started
        early; the dispatcher still waits for each callee's window). How many."""

    async def delete_calls(self, batch_id: ObjectId, limit: int) -> int:
        """Delete up to `limit` of the batch's calls; how many."""

    async def tallies_many(self, batch_ids: list[ObjectId]) -> dict[ObjectId, list[Tally]]:
        """`tallies` of several batches at once (MongoDB: one read)."""

    # -- the reaper
    async def expired(self, now: dt.datetime, limit: int) -> list[dict]:
        """In-flight calls whose leaseUntil has passed, earliest first."""

    async def take_for_reconciliation(self, call: dict, lease_until: dt.datetime, by: str) -> dict | None:
        """Compare-and-set on (status, leaseUntil) as read in `call`: the new lease, claimedBy = by.
        Returns the call as taken, or None if someone else changed it first."""

    async def held_provider_ids(self, provider_call_ids: Iterable[str]) -> set[str]:
        """Those of these provider call ids that some call of the store carries as its `providerCallId` (any
        batch, any status): the reaper never gives a call found at the provider by number a provider call that
        another call holds (two extensions of one number, a duplicate, another batch's call to the number).
        Indexed on the provider id (SQLite: a partial index; MongoDB: a sparse one), never a scan. An id only
        in a history (a call that went back to the queue for a retry forgets its provider id) is not seen:
        no index reaches into histories, and reading a batch's calls for them would scan the batch."""

    # -- the do-not-call list (see DncRepo)
    async def suppress_claimed(self, call_id: ObjectId, token: str, entry: dict, now: dt.datetime) -> dict | None:
        """A claim whose number was listed after it was claimed: dialing -> skipped (outcome `suppressed`),
        if still this attempt's (claimToken) and never placed (no providerCallId); the attempt not counted
        (attempts - 1), claim fields and activeKey cleared, `entry` pushed. The call after, or None."""

    async def suppress_waiting(self, batch_ids: list[ObjectId], e164: str, now: dt.datetime, entry: dict) -> list[dict]:
        """Every waiting (queued / held) call of these batches to this number (any extension, any chaining
        turn) -> skipped (outcome `suppressed`), `entry` pushed (an opt-out). The calls after."""
