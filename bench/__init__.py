"""Benchmarks (not tests): `make bench` runs them all and rewrites docs/benchmarks.md."""
