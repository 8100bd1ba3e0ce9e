"""The seams: what the use cases and the dispatcher ask of storage, as small Protocols.

Every port is in this one module, with the values its methods take and return, as APScheduler 4 keeps
its interfaces together: a newcomer reads the whole storage contract in one place (hence its length).

Two backends implement every port: `dialer/store/sqlite` (an SQLite file: the embedded, durable
default) and `dialer/store/mongo` (PyMongo's async driver: the scale-out path). One contract suite
(tests/contract) runs against both.
Nothing above `dialer/store` touches a collection, a table or builds a query.

Documents are plain dicts with our field names; ids are `bson.ObjectId`s; every datetime a
repository returns is timezone-aware UTC (the repositories normalise them). A repository never
hands out a document it keeps: callers may change what they get without changing the store.

A **call** document: `_id, batchId, workspaceId, phoneNumber` (E.164), `extension` (or None),
`activeKey` (present while the call waits or is in flight, see `active_key`), `input`
`{phoneNumber}`, `variables`, `timezones`, `zoneSource`, `status`, `attempts`, `nextAttemptAt`,
`createdAt`, `updatedAt`, `history` (list of entries `{at, event, ...}`); while dispatched:
`claimToken, claimedBy, dialAt, leaseUntil`, then `providerCallId`, `uncertain`, `answeredBy`;
`providerErrors` (refusals that did not count an attempt); once final: `outcome, finishedAt, duration`;
`meta` (what a compatibility face keeps with the call: a recipient's own id, its client data).

A **batch** document: `_id, workspaceId, agentId, name, callingNumbers, concurrencyLimit,
callingWindow, timezone, scheduledAt, retry, ringingTimeoutSeconds, status, createdAt, updatedAt`,
`startedAt` / `completedAt` once they happen, `enqueuedAt` (the last time calls joined its queue).

Status changes go through `dialer.core.machine`: each repository method that changes a status is
a compare-and-set on the current status (and, where named, the attempt's claim token), so a stale
writer changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
import hashlib
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable, Protocol

from bson import ObjectId

from dialer.core.machine import BatchMove
from dialer.core.records import PlannedCall


class StoreUnavailable(Exception):
    """The database failed (connection lost, timeout). The message is safe to show: a type name, never
    a document, a query or a connection string."""


class StoreOpenFailed(Exception):
    """The store cannot be opened at start-up (a data directory that cannot be written, a corrupt, foreign
    or newer file). The message says what to do; the process stops with it."""


def active_key(batch_id: ObjectId, e164: str, extension: str | None) -> str:
    """At most one waiting or in-flight call per callee of a batch. An extension is part of the
    callee: two extensions behind one number are two people."""
    return f"{batch_id}:{e164}" + (f";ext={extension}" if extension else "")


# ---------------------------------------------------------------------------------------------- calls

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


@dataclass(frozen=True)
class PlacedRecord:
    """The provider accepted the call: record its id onto the attempt that placed it."""

    call_id: ObjectId
    token: str
    provider_call_id: str
    at: dt.datetime
    lease_until: dt.datetime  # the lease becomes at least this


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

    async def next_due_at(self, batch_id: ObjectId) -> dt.datetime | None:
        """The earliest nextAttemptAt among the batch's queued calls."""

    async def has_active(self, batch_id: ObjectId) -> bool:
        """Any call of the batch waiting (queued / held) or in flight."""

    async def has_waiting(self, batch_id: ObjectId) -> bool: ...

    async def active_among(self, batch_ids: list[ObjectId]) -> set[ObjectId]:
        """Those of these batches with a call waiting (queued / held) or in flight: `has_active` of several
        batches in one read (the dispatcher's completion of the batches it found with nothing left)."""

    async def holders(self, call_ids: Iterable[ObjectId]) -> dict[ObjectId, tuple[str, str | None]]:
        """(status, claimToken) of each of these calls that exists (the slot ledger's harvest)."""

    async def claim(self, claims: list[Claim], deferrals: list[tuple],
                    records: list[PlacedRecord], now: dt.datetime) -> set[ObjectId]:
        """One write: the claims (queued -> dialing, attempts + 1; only calls still queued), the
        deferrals (a queued call's nextAttemptAt moved to its window's next opening: `(callId, when)`,
        or `(callId, when, entry)` to add `entry` to its history, as a compliance rule does) and the placed
        records (see `record_placed`). Returns the ids whose claim landed."""

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

    # -- the do-not-call list (see DncRepo)
    async def suppress_claimed(self, call_id: ObjectId, token: str, entry: dict, now: dt.datetime) -> dict | None:
        """A claim whose number was listed after it was claimed: dialing -> skipped (outcome `suppressed`),
        if still this attempt's (claimToken) and never placed (no providerCallId); the attempt not counted
        (attempts - 1), claim fields and activeKey cleared, `entry` pushed. The call after, or None."""

    async def suppress_waiting(self, batch_ids: list[ObjectId], e164: str, now: dt.datetime, entry: dict) -> list[dict]:
        """Every waiting (queued / held) call of these batches to this number (any extension, any chaining
        turn) -> skipped (outcome `suppressed`), `entry` pushed (an opt-out). The calls after."""


# -------------------------------------------------------------------------------------------- batches

class BatchRepo(Protocol):
    async def insert(self, batch: dict) -> None: ...

    async def get(self, batch_id: ObjectId) -> dict | None: ...

    async def runnable(self, now: dt.datetime) -> list[dict]:
        """Running batches whose scheduledAt is unset or has come, in _id order."""

    async def runnable_among(self, batch_ids: list[ObjectId], now: dt.datetime) -> list[dict]:
        """Those of these batches that are runnable now (as `runnable`), in _id order: the dispatcher's
        look just before it places, at the batches it is about to place calls of, whatever the others."""

    async def scheduled_due(self, now: dt.datetime) -> list[dict]:
        """Pending batches whose scheduledAt has come."""

    async def updated_since(self, since: dt.datetime) -> list[dict]:
        """Batches whose updatedAt is at or after `since`, whatever their status, in _id order (the counter
        reconciliation looks at batches that stopped lately: their last calls may have ended since)."""

    async def changed_since(self, since: dt.datetime) -> list[dict]:
        """Batches whose updatedAt or enqueuedAt is at or after `since`, whatever their status, in _id order:
        what a dispatcher re-reads between its full reads of the running batches (so its cost follows the
        changes, not the number of batches)."""

    async def move(self, batch_id: ObjectId, move: BatchMove, now: dt.datetime,
                   set_fields: dict[str, Any] | None = None, unset: tuple[str, ...] = ()) -> bool:
        """The batch's status from one of `move.sources` to `move.target` (compare-and-set), updatedAt
        = now, plus the given fields. False if the batch was not in a source status."""

    async def list(self, workspace_id: ObjectId, statuses: list[str] | None, agent_id: ObjectId | None,
                   before: ObjectId | None, limit: int) -> list[dict]:
        """The workspace's batches, newest first (_id descending), older than `before` if given, with one
        of `statuses` and of `agent_id` if given."""

    async def update(self, batch_id: ObjectId, statuses: list[str], set_fields: dict[str, Any],
                     now: dt.datetime) -> dict | None:
        """Set these fields (updatedAt = now) if the batch's status is one of `statuses`: the batch after,
        or None."""

    async def delete(self, batch_id: ObjectId) -> bool: ...

    async def by_public_id(self, public_id: str) -> dict | None:
        """The batch whose `publicId` (a UUID a face gave it) is this."""

    async def note_enqueued(self, batch_id: ObjectId, now: dt.datetime) -> None:
        """enqueuedAt = now: calls joined the queue (new, or back for a retry). Dispatchers in other
        processes see it when they re-read the runnable batches, and look at the batch again."""


# -------------------------------------------------------------------------------------------- tenancy

class TenancyRepo(Protocol):
    async def insert_workspace(self, workspace: dict) -> dict:
        """The workspace stored under its _id: this one, or the one already there (written under the same
        id by a request whose process died, which its retry takes over: see Claim in
        dialer/services/idempotency.py)."""

    async def get_workspace(self, workspace_id: ObjectId) -> dict | None: ...

    async def list_workspaces(self) -> list[dict]:
        """By createdAt."""

    async def insert_key(self, key: dict) -> None:
        """`{_id, workspaceId, keyHash, hint, createdAt, revoked}`. A key already stored under its _id for
        the same workspace is replaced by this one: it was written under the same id by a request whose
        process died before showing it (its retry shows this one); for another workspace, ValueError."""

    async def revoke_key(self, key_hash: str) -> bool: ...

    async def key_by_hash(self, key_hash: str) -> dict | None:
        """The key document if it exists and is not revoked."""

    async def insert_agent(self, agent: dict) -> bool:
        """False (and nothing written) when one of its callingNumbers is owned by another agent. True
        (nothing written) when an agent of its workspace is already stored under its _id: written under the
        same id by a request whose process died, which its retry takes over; of another workspace, ValueError."""

    async def list_agents(self, workspace_id: ObjectId) -> list[dict]:
        """By createdAt."""

    async def delete_agent(self, agent_id: ObjectId) -> bool:
        """Remove the agent (its calling numbers become free); batches that used it can no longer run."""

    async def get_agent(self, agent_id: ObjectId, workspace_id: ObjectId | None = None) -> dict | None:
        """The agent; with `workspace_id`, only if it belongs to that workspace."""

    async def agent_owning(self, workspace_id: ObjectId, numbers: list[str]) -> dict | None:
        """The workspace's agent that owns every one of these calling numbers."""

    async def update_workspace(self, workspace_id: ObjectId, set_fields: dict[str, Any]) -> dict | None:
        """Set these fields of the workspace (settings: `credits`, `normalizationAllowed`,
        `defaultConcurrencyLimit`); the workspace after, or None if unknown."""

    async def add_credits(self, workspace_id: ObjectId, amount: int, ref: str | None = None) -> dict | None:
        """credits += amount (negative takes away, never below zero) when the workspace has a balance
        (credits set); the workspace after, or None when unknown, unlimited or the balance is too small.
        With `ref` (a keyed request's claim) the change is noted with the workspace under it in the same
        write (`creditRefs`, its last CREDIT_REFS kept): another under a noted ref changes nothing and
        answers the workspace as it is (the retry of a request whose process died after adding)."""

    async def take_credits(self, workspace_id: ObjectId, amount: int, ref: str | None = None,
                           by: str | None = None) -> tuple[bool, int | None]:
        """Reserve `amount` credits atomically: (True, balance after) when the balance covers it, (True,
        None) when the workspace is unlimited (no balance set), (False, balance) when it does not.
        With `ref` (an enrollment intake's id) the reservation is noted with the workspace under it (by
        the request `by`) until `settle_credits`: another under a noted ref takes nothing and answers
        (True, balance) (the retry of a request whose process died after reserving)."""

    async def settle_credits(self, workspace_id: ObjectId, ref: str, refund_by: str | None = None) -> None:
        """Forget the reservation noted under `ref`: spent (its intake is written); with `refund_by`,
        given back first, if that request made it (its intake lost to another with the same key)."""

    async def reservations(self) -> list[CreditReservation]:
        """Every reservation still noted (each workspace's, by `take_credits` under a ref): the reaper gives
        back those whose request died before writing its intake and was never retried."""


CREDIT_REFS = 100  # the refs of a workspace's last credit changes it keeps (add_credits)


@dataclass(frozen=True)
class CreditReservation:
    workspace_id: ObjectId
    ref: str  # the enrollment intake's id
    amount: int
    by: str | None  # the request that made it


def reservation_key(ref: str) -> str:
    """Where a workspace notes the reservation made under `ref`: a field name any store accepts."""
    return hashlib.sha256(ref.encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------- idempotency

class IdempotencyRepo(Protocol):
    """Records `{_id: "<workspaceId>:<key>", state: running | done, claimedUntil, expiresAt, code?, body?}`.
    Expiry is the caller's (injected clock): the repository never deletes on its own."""

    async def insert(self, record: dict) -> bool:
        """False when a record with this _id exists."""

    async def get(self, record_id: str) -> dict | None: ...

    async def replace_if(self, record_id: str, expect: dict[str, Any], record: dict) -> bool:
        """Replace the record if each field in `expect` still has that value (compare-and-set)."""

    async def finish(self, record_id: str, code: int, body: dict) -> None:
        """state = done with the answer to replay."""

    async def release(self, record_id: str) -> None:
        """Delete the record if it is still running."""

    async def purge(self, now: dt.datetime) -> int:
        """Delete the records whose expiresAt <= now; how many."""


# ------------------------------------------------------------------------------------------- intakes

class IntakeRepo(Protocol):
    """An enrollment request's accepted contacts, written before its 202 and turned into a batch and its
    calls in the background: `{_id: "<workspaceId>:key:<Idempotency-Key>" or "<workspaceId>:id:<uuid>",
    workspaceId, publicId, batch (the batch document to write), calls (the planned calls as one BSON
    blob, dialer/core/enrollment.py encode_planned), answer (the 202's body, as sent), state: pending | done, createdAt,
    expiresAt, leaseUntil?, takenBy?}`. Expiry follows the caller's clock (purge)."""

    async def insert(self, intake: dict) -> dict | None:
        """None when written; the stored intake when one with this _id exists (nothing written)."""

    async def get(self, intake_id: str) -> dict | None: ...

    async def take(self, intake_id: str, by: str, until: dt.datetime, now: dt.datetime) -> dict | None:
        """Lease a pending intake whose lease is absent or past (compare-and-set): the intake, or None."""

    async def unfinished(self, now: dt.datetime, limit: int) -> list[str]:
        """Ids of pending intakes whose lease is absent or past, oldest first."""

    async def finish(self, intake_id: str, now: dt.datetime) -> None:
        """state = done; the planned calls are dropped (the answer stays, for replays)."""

    async def remove_expired(self, intake_id: str, now: dt.datetime) -> bool:
        """Delete the intake if it is done and expired by `now` (its key may be used afresh)."""

    async def purge(self, now: dt.datetime) -> int:
        """Delete the done intakes whose expiresAt <= now; how many."""


# ---------------------------------------------------------------------------------------- slot ledger

@dataclass
class LedgerState:
    """The slots in use, as the store saw them: the calls themselves are the record of the slots they hold
    (a call holds one while its status is in flight, and frees it by its own transition out of flight),
    so the ledger keeps only what the calls cannot show yet: the reservations made but not seen claimed
    (`pending`: entries `{callId, batchId, token, at}`, each read with `holder`, its call's `(status,
    claim token)` then, or None), and `next_dial_at`, which spaces dials by the account's rate.
    `flying` is the number of calls in flight per batch, counted *after* the holders were read (or in
    the same snapshot): a reservation seen claimed is then counted by its call, if still in flight."""

    version: int
    pending: list[dict]
    flying: dict[ObjectId, int]
    next_dial_at: dt.datetime | None


class SlotLedger(Protocol):
    async def read(self) -> LedgerState:
        """The reservations with their calls' holders, then the calls in flight per batch (one document,
        created empty if missing; its holders and counts read after it, in that order)."""

    async def write(self, version: int, pending: list[dict], next_dial_at: dt.datetime | None) -> bool:
        """Compare-and-set on `version` (then version + 1): the reservations not seen claimed yet, the next
        dial time. False if another writer came first."""

    async def release(self, call_ids: list[ObjectId], token: str) -> None:
        """Remove the reservations of these calls made under `token` (idempotent; bumps the version)."""


# ------------------------------------------------------------------------------------------ webhooks

@dataclass(frozen=True)
class OutboxEvent:
    """A change partners subscribe to, recorded by the store in the same write as the change (the outbox):
    `doc` is the call, batch or intake it reports (`kind`), `type` from dialer.core.webhook_events (None: the
    change yields no event, the relay just drops it), `at` when it happened (the document's clock)."""

    id: str
    kind: str  # call | batch | intake
    type: str | None
    at: dt.datetime
    doc: dict


class WebhookRepo(Protocol):
    """Partner webhook endpoints `{_id, workspaceId, url, events (list; empty: all), description, secret,
    previousSecret?, previousUntil?, disabled, disabledReason?, failingSince?, createdAt, updatedAt}` and
    their messages `{_id: "msg_<eventId>_<endpointId>", workspaceId, endpointId, eventId, type, body (the
    JSON sent, fixed at creation), status: pending | delivered | failed, step (attempts of the current
    schedule), nextAttemptAt, createdAt, attempts [{at, httpStatus?, error?, ms, response}], acquiredBy?,
    acquiredUntil?}`. Message ids sort as their events happened (cursor order)."""

    # -- endpoints
    async def insert_endpoint(self, endpoint: dict) -> None: ...

    async def get_endpoint(self, endpoint_id: ObjectId) -> dict | None: ...

    async def list_endpoints(self, workspace_id: ObjectId) -> list[dict]:
        """The workspace's endpoints, oldest first."""

    async def update_endpoint(self, endpoint_id: ObjectId, set_fields: dict[str, Any],
                              unset: tuple[str, ...] = ()) -> dict | None:
        """Set (and unset) these fields: the endpoint after, or None if unknown."""

    async def delete_endpoint(self, endpoint_id: ObjectId) -> bool:
        """Remove the endpoint and its messages."""

    async def note_result(self, endpoint_id: ObjectId, ok: bool, now: dt.datetime) -> dict | None:
        """A delivery's result: failingSince = now on a failure if unset, removed on a success. The endpoint after."""

    # -- the outbox
    async def outbox(self, limit: int) -> list[OutboxEvent]:
        """Up to `limit` recorded events not relayed yet, oldest first."""

    async def relay(self, events: list[OutboxEvent], messages: list[dict]) -> None:
        """Write these messages (one whose _id exists is left as it is) and then drop these events from the
        outbox: a relay that dies in between is repeated without a second message (deterministic ids)."""

    # -- messages
    async def due_endpoints(self, now: dt.datetime, limit: int) -> list[ObjectId]:
        """Endpoints with a pending message due by `now` and not leased (or its lease past)."""

    async def lease(self, endpoint_id: ObjectId, now: dt.datetime, by: str, until: dt.datetime,
                    limit: int) -> list[dict]:
        """Up to `limit` of the endpoint's due, unleased pending messages, oldest first, leased to `by` until
        `until` (compare-and-set: a message is leased by one sender at a time)."""

    async def record_attempt(self, message_id: str, by: str, attempt: dict, status: str, step: int,
                             next_attempt_at: dt.datetime | None) -> bool:
        """Append the attempt, set status / step / nextAttemptAt, release the lease; only while `by` holds it."""

    async def get_message(self, message_id: str) -> dict | None: ...

    async def list_messages(self, workspace_id: ObjectId, endpoint_id: ObjectId | None, status: str | None,
                            type_: str | None, before: str | None, limit: int) -> list[dict]:
        """The workspace's messages, newest first (_id descending), before the cursor `before` if given."""

    async def requeue(self, message_id: str, now: dt.datetime, step: int) -> dict | None:
        """A message back to pending, due now, at schedule position `step` (a manual retry): the message after."""

    async def recover(self, endpoint_id: ObjectId, since: dt.datetime, now: dt.datetime, step: int) -> int:
        """Every failed message of the endpoint created at or after `since` back to pending, due now. How many."""

    async def oldest_pending(self) -> dt.datetime | None:
        """createdAt of the oldest pending message (and of unrelayed events' changes: the outbox's backlog)."""


# ------------------------------------------------------------------------------------- do-not-call

class DncRepo(Protocol):
    """Each workspace's do-not-call list: entries `{workspaceId, number (E.164), reason?, source ('manual',
    'import', 'opt-out', 'api', ...), callId? (an opt-out's call), listedAt}`, one per (workspace, number).
    Looking numbers up is one indexed set-membership query, whatever the list's size."""

    async def add(self, entries: list[dict]) -> int:
        """Write these entries (distinct numbers); one whose number the workspace lists already is left as it
        is (its first listing stands). How many were new."""

    async def get(self, workspace_id: ObjectId, number: str) -> dict | None: ...

    async def remove(self, workspace_id: ObjectId, number: str) -> bool:
        """False when the number was not listed."""

    async def page(self, workspace_id: ObjectId, prefix: str | None, after: str | None, limit: int) -> list[dict]:
        """The workspace's entries by number, after the number `after`, starting with `prefix` if given."""

    async def listed(self, keys: Iterable[tuple[ObjectId, str]]) -> dict[tuple[ObjectId, str], dict]:
        """Of these (workspaceId, number) pairs, the listed ones with their entries (one batched lookup)."""

    async def count(self, workspace_id: ObjectId) -> int: ...


# ------------------------------------------------------------------------------------ frequency caps

@dataclass(frozen=True)
class CapRequest:
    """One attempt to be counted against a number's rolling-window cap within a workspace."""

    workspace_id: ObjectId
    number: str  # E.164
    call_id: ObjectId
    limit: int | None  # attempts allowed in the window, this one included; None: counted, never refused


class CapLedger(Protocol):
    """Attempts per number per workspace over a rolling window (dialer/core/compliance.py's caps), kept as
    entries `{callId, token, at}` per (workspace, number). Reserved like slots: `reserve` is atomic against
    every other writer, so two dispatchers never both take the last attempt a cap allows."""

    async def reserve(self, requests: list[CapRequest], token: str, at: dt.datetime,
                      window: dt.timedelta) -> dict[ObjectId, dt.datetime]:
        """In one atomic step, in order: an entry stamped `at` for each request whose number has fewer than
        `limit` entries stamped after `at - window` (the requests before it count). The refused: call id
        -> the first instant the cap allows one more (the oldest counted entry's stamp + window). Entries
        stamped at or before `at - window` of these numbers may be dropped."""

    async def release(self, call_ids: list[ObjectId], token: str) -> None:
        """Remove the entries of these calls made under `token` (a claim that did not happen; idempotent)."""

    async def count(self, workspace_id: ObjectId, number: str, since: dt.datetime) -> int:
        """Entries of the number stamped after `since` (operators and tests)."""

    async def purge(self, before: dt.datetime) -> int:
        """Drop every entry stamped at or before `before` (the reaper: numbers not dialled since). How many."""


# --------------------------------------------------------------------------------------- all of them

@dataclass
class Repositories:
    kind: str  # "sqlite" | "mongodb" | "mongomock"
    calls: CallRepo
    batches: BatchRepo
    tenancy: TenancyRepo
    idempotency: IdempotencyRepo
    ledger: SlotLedger
    intakes: IntakeRepo
    webhooks: WebhookRepo
    dnc: DncRepo
    closer: Any = None  # awaitable factory that closes the backend's client
    database: Any = None  # the SQLite backend's Database (back-ups, operation counts), else None
    caps: CapLedger | None = None  # attempts per number (frequency caps); None: caps are not kept

    @property
    def embedded(self) -> bool:
        """Kept on this machine (the SQLite file), not on a database server."""
        return self.kind == "sqlite"

    def seen_through(self, wrap: Callable[[str, Any], Any]) -> Repositories:
        """The same stores with each repository seen through `wrap(name, repository)` (the benchmarks count
        operations, the simulation injects faults). The view closes nothing: the stores' owner does."""
        views = {f.name: wrap(f.name, getattr(self, f.name)) for f in fields(self)
                 if f.name not in ("kind", "closer", "database") and getattr(self, f.name) is not None}
        return Repositories(kind=self.kind, database=self.database, **views)

    async def close(self) -> None:
        if self.closer is not None:
            await self.closer()
