"""`python -m sim --seed N --calls M [--dispatchers K] [--backend sqlite|mongomock]`: one seeded run; exits 1
on a violation, after printing its step and the command that replays it (docs/simulation.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from sim.run import Config, World


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--dispatchers", type=int, default=None, help="2-5 drawn from the seed by default")
    parser.add_argument("--backend", choices=("sqlite", "mongomock"), default="sqlite")
    parser.add_argument("--no-faults", action="store_true", help="no injected faults (a baseline)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args()
    if os.environ.get("PYTHONHASHSEED") != "0":
        # Set iteration order follows string hashes: fixed, so that a seed replays the same run.
        os.execve(sys.executable, [sys.executable, "-m", "sim", *sys.argv[1:]], {**os.environ, "PYTHONHASHSEED": "0"})
    logging.disable(logging.CRITICAL)  # the engine's own logs (a million calls' worth); the summary says it all
    config = Config(seed=args.seed, calls=args.calls, dispatchers=args.dispatchers, backend=args.backend,
                    faults=not args.no_faults, progress=None if args.quiet else lambda line: print(line, flush=True))
    result = asyncio.run(World(config).run())
    print(f"seed {config.seed}: {result.calls:,} calls simulated ({result.placed:,} placements) in {result.steps:,} "
          f"steps, {result.virtual_seconds / 3600:.1f} virtual hours from {result.started_at:%Y-%m-%d %H:%M} UTC, "
          f"{config.dispatchers} dispatchers, {config.backend}")
    print("faults and events: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.counts.items())))
    print(f"violations: {len(result.violations)}")
    print(f"wall time: {result.wall_seconds:.1f} s ({result.calls / max(result.wall_seconds, 1e-9):,.0f} calls/s)")
    if result.violations:
        for step, text in result.violations[:10]:
            print(f"  step {step:,}: {text}")
        print(f"replay: {config.replay()}")
        sys.exit(1)


if __name__ == "__main__":
    main()
