"""Routing-speed benchmarks: `python -m bench` (see docs/PERFORMANCE.md). Benchmarks measure; tests check behaviour."""
