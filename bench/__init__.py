"""Benchmarks, run with `make bench` (each module is `python -m bench.<name>`)."""
