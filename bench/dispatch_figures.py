"""The figures computed from a dispatch run (bench/dispatch_run.py's Run): makespan against a
zero-latency FIFO replay of the same calls, utilisation (sampled and time-weighted), port calls per
placed call by phase, and the printed report of one run.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

from bench.dispatch_run import Run, sweep_peaks
from bench.dispatch_workload import STEP


def fifo_replay(out: Run) -> float:
    """Makespan of a dispatcher with no latency: each call, in the measured placement order, placed the
    instant a slot of its batch, a slot of the account and the dial rate allow; it occupies its slots
    for its measured provider-side time."""
    wl = out.wl
    account = [0.0] * wl.account
    per_batch: dict[str, list[float]] = defaultdict(lambda: [0.0] * wl.limit)
    gap = 1.0 / wl.cps
    last = -gap
    end = 0.0
    for sid in out.order:
        busy = out.ended_at[sid] - out.placed_at[sid]
        mine = per_batch[out.batch_of[sid]]
        at = max(heapq.heappop(account), heapq.heappop(mine), last + gap)
        last = at
        heapq.heappush(account, at + busy)
        heapq.heappush(mine, at + busy)
        end = max(end, at + busy)
    return end


@dataclass
class Figures:
    makespan: float
    fifo: float
    utilisation: float
    utilisation_time: float
    ops: int
    dispatcher_ops: int
    event_ops: int
    placed: int

    @property
    def ratio(self) -> float:
        return self.makespan / self.fifo if self.fifo else float("inf")

    @property
    def ops_per(self) -> float:
        return self.ops / self.placed if self.placed else float("inf")


def figures(out: Run) -> Figures:
    wl = out.wl
    intervals = [(out.placed_at[s], out.ended_at[s]) for s in out.order]
    # Calls are waiting from the first step until the last call is claimed (claims only grow), so the
    # waiting steps are the contiguous span [0, W): the exact integral of provider-side calls over it.
    starts = out.waiting_seconds
    assert starts == [i * STEP for i in range(len(starts))], "waiting steps not contiguous"
    span = len(starts) * STEP
    weighted = sum(max(0.0, min(e, span) - p) for p, e in intervals)
    waited = len(out.waiting_seconds) * STEP
    return Figures(
        makespan=out.completed_at or 0.0,
        fifo=fifo_replay(out),
        # What could be in flight at each step: the account's cap, or the batches' limits where a batch has
        # fewer calls left than its limit (at the end, a batch of limit 1 with calls left holds one slot).
        utilisation=out.waiting_in_flight / out.waiting_bound if out.waiting_bound else 0.0,
        utilisation_time=weighted / (wl.bound * waited) if waited else 0.0,
        ops=out.counter.total,
        dispatcher_ops=out.counter.in_phases("tick", "reaper"),
        event_ops=out.counter.in_phases("events"),
        placed=out.placed,
    )


def report_run(out: Run, f: Figures) -> None:
    wl = out.wl
    per = lambda n: n / f.placed if f.placed else float("inf")  # noqa: E731
    failed = [name for name, ok in out.checks if not ok]
    print(f"\n== {out.label}: {wl.describe()}, {out.mode} events, {out.backend} store")
    print(f"   {out.steps:,} steps = {out.steps * STEP:,.0f} virtual s in {out.real_seconds:.1f} s real "
          f"({out.cpu_seconds:.1f} s CPU in steps + reaper); {out.reaper_runs} reaper runs")
    print(f"   outcomes: {', '.join(f'{k} {v}' for k, v in sorted(out.outcomes.items()))}")
    print(f"   dispatcher: {out.stats_summary}")
    print(f"   checks: {'all passed' if not failed else 'FAILED: ' + '; '.join(failed)}")
    pb, pa = out.peak_batch, out.peak_account
    sb, sa = sweep_peaks(out)
    views = [v for v in ("ledger", "store", "provider") if v in pb]
    print(f"   peak in flight ({' / '.join(views)} / sweep): batch {' / '.join(str(pb[v]) for v in views)} / {sb} "
          f"(limit {wl.limit}); account {' / '.join(str(pa[v]) for v in views)} / {sa} (cap {wl.account})")
    print(f"   makespan {f.makespan:,.1f} s; zero-latency FIFO {f.fifo:,.1f} s; ratio {f.ratio:.3f}")
    print(f"   utilisation (bound {wl.bound}, {out.waiting_steps:,} steps with calls waiting): sampled "
          f"{f.utilisation:.3f}, time-weighted {f.utilisation_time:.3f}")
    print(f"   port calls per placed call: {f.ops_per:.2f} = dispatcher {per(f.dispatcher_ops):.2f} "
          f"(ticks {per(out.counter.in_phases('tick')):.2f}, reaper {per(out.counter.in_phases('reaper')):.2f}) "
          f"+ events {per(f.event_ops):.2f}  ({f.ops:,} / {f.placed:,})")
    for phase in ("tick", "reaper", "events"):
        items = sorted(((w, n) for (p, w), n in out.counter.counts.items() if p == phase), key=lambda x: -x[1])
        if items:
            print(f"     {phase:<7} " + ", ".join(f"{w} {per(n):.3f}" for w, n in items))
    if out.round_trips is not None:
        rt = out.round_trips
        print(f"   MongoDB round trips per placed call: {per(rt.total):.2f} = dispatcher "
              f"{per(rt.in_phases('tick', 'reaper')):.2f} + events {per(rt.in_phases('events')):.2f}  ({rt.total:,})")
        for phase in ("tick", "reaper", "events"):
            items = sorted(((w, n) for (p, w), n in rt.counts.items() if p == phase), key=lambda x: -x[1])
            if items:
                print(f"     {phase:<7} " + ", ".join(f"{w} {per(n):.3f}" for w, n in items))
