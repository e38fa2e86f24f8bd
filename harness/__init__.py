"""Code shared by the tests and the benchmarks (neither imports the other).

Why this package exists: the fleet figures (many `cunxiang run` stations on one broker) are
both a benchmark (100 stations, benchmarks/fleet.py) and a regression test (20 stations,
tests/e2e/test_fleet.py). The runner lives here once, so the two measure the same thing.
"""
