"""The dispatch bench's workloads: what one is (Workload), the constants of every run (seed, virtual
clock and its step, dial rate, simulator outcomes, time zone), the settings a run uses, and writing a
workload's batches and calls into a store before the run (not measured). See bench/dispatch.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dialer.composition import Services
from dialer.core.batch_spec import parse_batch_spec
from dialer.core.records import PlannedCall
from dialer.core.statuses import BatchStatus
from dialer.settings import Settings

SEED = 20261123
STEP = 0.5  # virtual seconds between steps: the production poll interval
CPS = 20.0
RINGING_TIMEOUT = 30
MEAN_DURATION = 90.0
OUTCOMES = {"answered": 0.55, "busy": 0.10, "no_answer": 0.25, "failed": 0.05, "machine": 0.05}
CHUNK = 1000
T0 = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.timezone.utc)  # Monday 10:00 in New York
ZONE = "America/New_York"
CROSS_CHECK_EVERY = 20


@dataclass(frozen=True)
class Workload:
    name: str
    batches: int
    calls_per_batch: int
    limit: int
    account: int
    cps: float = CPS

    @property
    def calls(self) -> int:
        return self.batches * self.calls_per_batch

    @property
    def account_bound(self) -> bool:
        return self.batches * self.limit > self.account

    @property
    def bound(self) -> int:
        """The calls that may be in flight at once: the account's cap, or every batch at its limit."""
        return min(self.account, self.batches * self.limit)

    def describe(self) -> str:
        return (f"{self.batches} x {self.calls_per_batch:,} calls, limit {self.limit} each, account cap {self.account}, "
                f"{self.cps:g} calls/s")


def virtual_seconds(at: dt.datetime) -> float:
    """Virtual seconds since the run's start (T0)."""
    return (at - T0).total_seconds()


# ------------------------------------------------------------------------------------------ setup

def settings_for(wl: Workload) -> Settings:
    return Settings.load(env={}, embedded_dispatcher="false", provider="simulator", sim_time_scale=1.0,
                         calls_per_second=wl.cps, max_concurrent_calls=wl.account, poll_interval_seconds=STEP)


def planned(e164: str, index: int) -> PlannedCall:
    return PlannedCall(index=index, e164=e164, raw_phone=e164, extension=None, variables={}, zones=(ZONE,),
                       zone_source="number", earliest=T0)


def number(n: int) -> str:
    return f"+1212{5550000 + n}"  # +1212555xxxx, +1212556xxxx, ...: distinct across every batch


async def setup(services: Services, wl: Workload) -> list[dict]:
    """Workspace, agent, the batches and their calls (uncounted); returns the batches, started."""
    workspace, _ = await services.tenancy.create_workspace("dispatch bench")
    agent = await services.tenancy.create_agent(workspace["_id"], {
        "name": "bench agent", "requiredVariables": [], "callingNumbers": ["+14155550100"], "timezones": [ZONE]})
    batches = []
    n = 0
    for b in range(wl.batches):
        spec = parse_batch_spec({"name": f"dispatch bench {b}", "agentId": str(agent["_id"]),
                                 "concurrencyLimit": wl.limit, "ringingTimeoutSeconds": RINGING_TIMEOUT,
                                 "retry": {"maxAttempts": 1, "on": []}}, services.phones)
        batch = await services.batches.create(workspace["_id"], agent, spec)
        for start in range(0, wl.calls_per_batch, CHUNK):
            chunk = [planned(number(n + i), i) for i in range(start, min(start + CHUNK, wl.calls_per_batch))]
            result = await services.repos.calls.enqueue(batch, chunk, services.clock.now())
            assert result.error is None and result.inserted == len(chunk), result
        n += wl.calls_per_batch
        assert await services.batches.start_after_insert(batch) == BatchStatus.RUNNING.value
        batches.append(batch)
    return batches
