"""A deterministic simulation of the whole engine (issue 17, item 1): `python -m sim --seed N --calls M`.

One seeded run drives the real repositories, dispatchers, placers, reapers, call events, operators' use
cases, ingestion, enrollment and chaining on a virtual clock, with faults injected at random, and checks
the invariants of DESIGN.md after every step. docs/simulation.md says how to run and replay it.

- run.py        the driver: one step = operators act, the provider's events, every live dispatcher ticks,
                the reapers at their cadence, the clock moves
- workload.py   what the operators and partners do (batches, records, enrollments, stops, patches...)
- faults.py     dispatchers dying between two store operations, store and provider errors, callbacks
                lost / duplicated / delayed
- checks.py     the invariants, kept incrementally from the provider's side
"""
