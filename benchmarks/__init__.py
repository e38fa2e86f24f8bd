"""The performance suite: every figure of docs/performance.md § Targets, measured on the machine it runs on.

Run it with ``python -m benchmarks`` (``--quick`` for a run of under two minutes). Each figure
has its own module; `benchmarks.suite` runs them, prints the table and writes the JSON.
docs/performance.md explains what each figure times and what was done to meet the targets.
"""
