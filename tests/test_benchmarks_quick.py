"""The benchmark suite's smallest configuration still runs and reports every figure.

Why this test exists: the suite (``python -m benchmarks``) is run by hand, so without a test its
code would rot unnoticed as the station changes. This runs its ``--smoke`` sizes (a few thousand
readings, a few alarms and alerts, a one-second window, a half-second broker outage — about
15 s) end to end, with the real service, broker and subscriber, and checks that the JSON has
every figure of the targets table with a measured number and the machine it ran on. It does not
check pass or fail: CI machines differ, and smoke sizes say nothing about the targets.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from harness.figures import FIGURES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_run_reports_every_figure_with_a_number(tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    command = [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(result)]
    proc = subprocess.run(
        [*command, "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(result.read_text())

    assert [row["key"] for row in doc["figures"]] == [figure.key for figure in FIGURES]
    for row in doc["figures"]:
        median = row["median"]
        assert isinstance(median, int | float) and math.isfinite(median), row
        assert row["min"] <= median <= row["max"], row
        assert row["runs"], row
        assert row["target"] and row["thingsboard_3_8_5"], row
    machine = doc["machine"]
    assert machine["cores"] >= 1
    assert machine["sqlite"] and machine["mosquitto"] and machine["python"]
    assert not doc["errors"]
    # The printed table has one row per figure, beside its target.
    for row in doc["figures"]:
        assert f"| {row['label']} | {row['target']} |" in proc.stdout
