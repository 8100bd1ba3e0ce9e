"""What must hold after a crash test has settled, read through public interfaces only: the HTTP API
(batches with their counters, pages of calls, the workspace's credits) and the fake Twilio's record of
every call it was asked to place (tests/fake_twilio_server.py). `failures(world, state, record)` lists
every broken invariant, in words, for the assertion message.

- every acknowledged record exists exactly once (and nothing else was written);
- no call was placed twice for one attempt, nor more often than its attempts;
- no callee was dialled twice at once, and no chained group had two calls at once;
- every call is final (a paused batch's waiting calls wait, none is in flight) and so is every batch;
- a batch placed nothing while stopped (after its stop or cancel had answered);
- every batch's counters equal a recount of its calls;
- credits spent equal contacts accepted;
- no Idempotency-Key was answered two different ways.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from dialer.core.statuses import IN_FLIGHT, TERMINAL, WAITING

FINAL = {s.value for s in TERMINAL}
WAITS = {s.value for s in WAITING}
FLYING = {s.value for s in IN_FLIGHT}


@dataclass
class BatchPlan:
    """What the traffic did to a batch: its fate, and when it was not allowed to place anything."""

    batch_id: str
    expect: str = "completed"  # its final status: completed | paused | cancelled
    quiet: list[list[float | None]] = field(default_factory=list)  # [stopped at, started again at or None]
    numbers: Counter = field(default_factory=Counter)  # acknowledged records per number


@dataclass
class World:
    """The traffic's own account: its batches, what it was told, the credits it began with."""

    batches: dict[str, BatchPlan] = field(default_factory=dict)
    acks: list[tuple[str, list[str], dict]] = field(default_factory=list)  # (batch, numbers, data) of each add
    enrolled: list[tuple[str, list[str], dict]] = field(default_factory=list)  # (key, numbers, answer)
    answers: dict[str, list] = field(default_factory=dict)  # Idempotency-Key -> [(request, Answer)]
    credits_start: int = 0


@dataclass
class State:
    """The settled engine as the API shows it."""

    views: dict[str, dict]  # batch id -> GET /api/call/batches/{id} data
    calls: dict[str, list[dict]]  # batch id -> every call, from the pages
    credits: int | None
    listed: set[str]  # every batch of the workspace, from GET /api/call/batches


def failures(world: World, state: State, record: list[dict]) -> list[str]:
    out: list[str] = []
    out += _acknowledged(world, state)
    out += _placements(state, record)
    out += _finality(world, state)
    out += _quiet(world, state, record)
    out += _counters(state)
    out += _money_and_keys(world, state)
    return out


def counters_differ(state: State) -> bool:
    return bool(_counters(state))


def _acknowledged(world: World, state: State) -> list[str]:
    out = [f"batch {b} exists, but no createBatch or enrollment was answered with it"
           for b in sorted(state.listed - set(world.batches))]
    for batch_id, numbers, data in world.acks:
        ids = {c["phoneNumber"]: c["callId"] for c in state.calls[batch_id]}
        theirs = sorted(ids[n] for n in numbers if n in ids)
        if data.get("added") != len(numbers) or sorted(data.get("callIds", [])) != theirs:
            out.append(f"addCallsToBatch into {batch_id}: {len(numbers)} records answered {data.get('added')} added, "
                       f"callIds not those of the batch's calls for them")
    for key, numbers, answer in world.enrolled:
        if answer.get("accepted") != len(numbers):
            out.append(f"enrollment {key}: {len(numbers)} contacts, answered accepted={answer.get('accepted')}")
    for plan in world.batches.values():
        have = Counter(c["phoneNumber"] for c in state.calls[plan.batch_id])
        if have != plan.numbers:
            extra, missing = have - plan.numbers, plan.numbers - have
            out.append(f"batch {plan.batch_id}: calls per number differ from the acknowledged records: "
                       f"{sum(extra.values())} extra (e.g. {list(extra)[:3]}), {sum(missing.values())} missing "
                       f"(e.g. {list(missing)[:3]})")
    return out


def _placements(state: State, record: list[dict]) -> list[str]:
    out = []
    calls = {c["callId"]: c for batch in state.calls.values() for c in batch}
    creates = [r for r in record if r["event"] == "create"]
    ends = {r["sid"]: r for r in record if r["event"] == "end"}
    per_attempt = Counter((r["callId"], r["attempt"]) for r in creates)
    out += [f"call {cid} attempt {att} placed {n} times" for (cid, att), n in per_attempt.items() if n > 1]
    per_call = Counter(r["callId"] for r in creates)
    for cid, n in per_call.items():
        if cid not in calls:
            out.append(f"the provider placed a call for {cid}, which no batch has")
        elif n > calls[cid]["attempts"]:
            out.append(f"call {cid} placed {n} times in {calls[cid]['attempts']} attempts")
    out += [f"provider call {r['sid']} to {r['to']} never ended" for r in creates if r["sid"] not in ends]
    out += _overlaps("callee", ((r["to"], r) for r in creates), ends)
    groups = ((f"{c['batchId']}/{c['group']['key']}", r) for r in creates
              if (c := calls.get(r["callId"])) is not None and c.get("group"))
    out += _overlaps("chained group", groups, ends)
    return out


def _overlaps(what: str, keyed, ends: dict[str, dict]) -> list[str]:
    """[create, end] intervals per key must not overlap."""
    by_key = defaultdict(list)
    for key, create in keyed:
        end = ends.get(create["sid"])
        by_key[key].append((create["t"], end["t"] if end else float("inf"), create["sid"]))
    out = []
    for key, spans in by_key.items():
        spans.sort()
        for (start, stop, sid), (later, _, other) in zip(spans, spans[1:]):
            if later < stop:
                out.append(f"{what} {key} dialled twice at once: {sid} until {stop:.3f}, {other} from {later:.3f}")
    return out


def _finality(world: World, state: State) -> list[str]:
    out = []
    for batch_id, plan in world.batches.items():
        status = state.views[batch_id]["status"]
        if status != plan.expect:
            out.append(f"batch {batch_id} is {status}, expected {plan.expect}")
        allowed = FINAL | WAITS if plan.expect == "paused" else FINAL
        stuck = Counter(c["status"] for c in state.calls[batch_id] if c["status"] not in allowed)
        if stuck:
            out.append(f"batch {batch_id} ({status}) has calls not final: {dict(stuck)}")
    return out


def _quiet(world: World, state: State, record: list[dict]) -> list[str]:
    """No call of a batch placed between its stop (or cancel) answering and the start that followed."""
    batch_of = {c["callId"]: plan_id for plan_id, calls in state.calls.items() for c in calls}
    out = []
    for r in record:
        plan = world.batches.get(batch_of.get(r.get("callId"), ""))
        for start, stop in plan.quiet if plan else ():
            if r["event"] == "create" and r["t"] >= start and (stop is None or r["t"] < stop):
                out.append(f"batch {plan.batch_id}: call {r['callId']} placed at {r['t']:.3f}, while stopped "
                           f"(from {start:.3f} to {stop if stop is None else round(stop, 3)})")
    return out


def _counters(state: State) -> list[str]:
    out = []
    for batch_id, view in state.views.items():
        calls = state.calls[batch_id]
        counters = view["counters"]
        recount = {
            "scheduled": len(calls),
            "attempts": sum(c["attempts"] for c in calls),
            "finished": sum(c["status"] in FINAL for c in calls),
            "waiting": sum(c["status"] in WAITS for c in calls),
            "inFlight": sum(c["status"] in FLYING for c in calls),
            "byStatus": {s: n for s, n in Counter(c["status"] for c in calls).items()},
            "byOutcome": dict(Counter(c["outcome"] for c in calls if c["status"] in FINAL and c["outcome"])),
        }
        shown = {k: counters[k] for k in recount}
        shown["byStatus"] = {s: n for s, n in counters["byStatus"].items() if n}
        shown["byOutcome"] = {s: n for s, n in counters["byOutcome"].items() if n}
        if shown != recount:
            out.append(f"batch {batch_id}: counters {shown} but a recount gives {recount}")
    return out


def _money_and_keys(world: World, state: State) -> list[str]:
    out = []
    accepted = sum(answer.get("accepted", 0) for _, _, answer in world.enrolled)
    spent = world.credits_start - (state.credits or 0)
    if spent != accepted:
        out.append(f"credits spent {spent} != contacts accepted {accepted}")
    for key, answers in world.answers.items():
        kept = {(a.status, a.body) for _, a in answers
                if a.status < 500 and not (a.status == 409 and b"header" in a.body)}  # not a key still in use
        if len(kept) > 1:
            out.append(f"Idempotency-Key {key} answered {len(kept)} ways: {[(s, b[:120]) for s, b in kept]}")
    return out
