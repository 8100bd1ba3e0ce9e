"""The deterministic simulation (sim/, docs/simulation.md): a seeded run of the real engine with faults keeps
every invariant, and the checks do fail when an engine piece breaks one."""

from __future__ import annotations

import logging

import pytest

from sim.run import Config, World


@pytest.fixture(autouse=True)
def quiet_engine_logs():
    # The engine logs every call and every injected fault: tens of thousands of records.
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


def small(seed: int, calls: int, **kw) -> Config:
    """A workload dense enough to run fast: short calls, wide windows mostly, many calls per step."""
    return Config(seed=seed, calls=calls, wide_windows=0.9, **kw)


async def test_a_seeded_run_with_faults_keeps_every_invariant():
    # 50,000 calls (issue 17): about 2 minutes of one core.
    result = await World(small(seed=17, calls=50_000)).run()

    assert result.violations == []
    assert result.calls >= 47_000  # call records created (duplicates collapse), every one final at the end
    assert result.placed >= result.calls // 2
    # The faults did happen: dispatchers died, callbacks were lost and duplicated, the provider failed.
    for fault in ("dispatcher_deaths", "callbacks_lost", "callbacks_duplicated", "callbacks_delayed",
                  "provider_rate_limited", "provider_unknown_after_create"):
        assert result.counts[fault] > 0, fault


class IgnoresLimits:
    """A broken engine piece: the running batches as a dispatcher reads them, limits tripled."""

    def __init__(self, batches) -> None:
        self._batches = batches

    def __getattr__(self, name):
        return getattr(self._batches, name)

    @staticmethod
    def _tripled(batches):
        return [{**b, "concurrencyLimit": b["concurrencyLimit"] * 3} for b in batches]

    async def runnable(self, now):
        return self._tripled(await self._batches.runnable(now))

    async def runnable_among(self, batch_ids, now):
        return self._tripled(await self._batches.runnable_among(batch_ids, now))


def ignore_limits(engine) -> None:
    engine.dispatcher.batches = engine.dispatcher.book.repo = IgnoresLimits(engine.dispatcher.batches)


async def test_a_dispatcher_that_ignores_the_limit_is_caught_with_its_seed_and_step():
    config = small(seed=5, calls=3_000, faults=False, dispatchers=2, engine_hook=ignore_limits)

    result = await World(config).run()

    assert result.violations, "the checks let a dispatcher pass its batches' limits"
    step, text = result.violations[0]
    assert step >= 1 and "calls of the batch at once, limit" in text
    assert config.replay() == "python -m sim --seed 5 --calls 3000 --dispatchers 2 --backend sqlite --no-faults"
