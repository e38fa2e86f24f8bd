"""The alert latency row: runs benchmarks/alert_latency.py and reads the figures it writes.

Why this module exists: the alert path (publish at the centre → envelope check → alert log →
broadcast queue → first sound chunk handed to PyAudio's ``stream.write()``) is measured by
benchmarks/alert_latency.py, which its own author keeps next to the alert code. The suite runs
it as a subprocess, as a user would, and takes its p50 and p99 from the JSON it writes
(benchmarks/results/alert_latency.json, or the file given with ``--json`` when the script
takes that option). When the script is not there, the row says so instead of a number.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.station import ROOT

SCRIPT = ROOT / "benchmarks" / "alert_latency.py"
DEFAULT_RESULT = ROOT / "benchmarks" / "results" / "alert_latency.json"
MISSING = "not measured: benchmarks/alert_latency.py missing"


class AlertFigureError(Exception):
    """The script ran but its figures could not be read."""


def _options() -> str:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout


def _numbers(doc: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], float]]:
    """Every numeric leaf of a JSON object with the keys leading to it (lists not entered)."""
    if isinstance(doc, dict):
        found = []
        for key, value in doc.items():
            found += _numbers(value, (*path, str(key).lower()))
        return found
    if isinstance(doc, int | float) and not isinstance(doc, bool):
        return [(path, float(doc))]
    return []


def _p50_p99(doc: Any) -> tuple[float, float]:
    """The end-to-end p50 and p99 (ms) of one result object: the shallowest keys naming them.

    Targets and the station's own share (``station_p99_ms``) are not the figure.
    """
    leaves = [
        (path, value)
        for path, value in _numbers(doc)
        if not any(part.startswith(("target", "station")) for part in path)
    ]
    picked = []
    for name in ("p50", "p99"):
        candidates = [(len(path), path, v) for path, v in leaves if name in path[-1]]
        if not candidates:
            raise AlertFigureError(f"no {name} in the result: {json.dumps(doc)[:400]}")
        candidates.sort(key=lambda c: (c[0], "ms" not in c[1][-1], c[1]))
        picked.append(candidates[0][2])
    return picked[0], picked[1]


def variants(doc: Any) -> dict[str, tuple[float, float]]:
    """(p50, p99) per measured set-up: the script may measure several (``runs``), first first."""
    runs = doc.get("runs") if isinstance(doc, dict) else None
    if isinstance(runs, list) and runs and all(isinstance(run, dict) for run in runs):
        return {
            str(run.get("broker") or run.get("name") or f"run {n}"): _p50_p99(run)
            for n, run in enumerate(runs)
        }
    return {"": _p50_p99(doc)}


def run_once(alerts: int, result: Path) -> dict[str, Any]:
    """Run the script once; its result document."""
    options = _options()
    command = [sys.executable, str(SCRIPT)]
    if "--alerts" in options:
        command += ["--alerts", str(alerts)]
    target = DEFAULT_RESULT
    if "--json" in options:
        command += ["--json", str(result)]
        target = result
    target.unlink(missing_ok=True)
    out = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600 + alerts * 2
    )
    if out.returncode != 0:
        raise AlertFigureError(f"alert_latency.py exited {out.returncode}: {out.stderr[-2000:]}")
    if not target.exists():
        raise AlertFigureError(f"alert_latency.py wrote no {target}")
    doc: dict[str, Any] = json.loads(target.read_text())
    return doc


def measure(workdir: Path, alerts: int, runs: int) -> dict[str, Any]:
    """p50 and p99 of each run (the script's first set-up), or the reason there are none.

    Further set-ups the script measures (another broker configuration) are kept as details.
    """
    if not SCRIPT.exists():
        return {"note": MISSING}
    out: dict[str, Any] = {"alert_p50_ms": [], "alert_p99_ms": [], "documents": []}
    for n in range(runs):
        doc = run_once(alerts, workdir / f"alert_latency-{n}.json")
        for index, (name, (p50, p99)) in enumerate(variants(doc).items()):
            suffix = "" if index == 0 else f" [{name}]"
            out.setdefault(f"alert_p50_ms{suffix}", []).append(p50)
            out.setdefault(f"alert_p99_ms{suffix}", []).append(p99)
            if index == 0 and name:
                out["alert_setup"] = name
        out["documents"].append(doc)
    return out
