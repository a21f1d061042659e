"""Benchmarks of the toolkit, each run as `python -m benchmarks.<name> [--quick] [--json FILE]` from the checkout.

`--quick` runs a benchmark's whole path on small sizes in seconds (what `make bench` and the tests do);
its figures are not for quoting. Shared pieces live in `_common` (command line, timing, JSON) and
`_latency` (the referee, timings beside the probe, made-up tables).
"""
