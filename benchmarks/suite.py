"""``python -m benchmarks``: measure every figure of the targets table, print it, write JSON.

Why this module exists: docs/performance.md § Targets defines how good the station is in figures; this is
the one command that measures all of them on the machine it runs on (medians of several runs
with their spread), prints the table beside the targets and the ThingsBoard IoT Gateway 3.8.5
column of the design, and writes the same as JSON under benchmarks/results/ (gitignored).

    python -m benchmarks            # the full suite (about 12 minutes on a 2-core machine)
    python -m benchmarks --quick    # smaller sizes, under 2 minutes, for everyday use
    python -m benchmarks --only drain,service --runs 1
    python -m benchmarks --quick --fleet 20   # with the fleet figures, 20 stations

Sections: ``alert`` (benchmarks/alert_latency.py), ``alertcpu`` (station CPU per alert:
benchmarks/fleet.py), ``gpio`` (benchmarks/gpio_alarm.py), ``drain`` (ingest, drain, bulk bytes
and CPU per reading, RSS while draining: benchmarks/drain.py), ``service`` (CPU share, everyday
bytes per reading, idle RSS, broker outages: benchmarks/service_run.py), ``live`` (status
answers and the export: benchmarks/live.py) and ``fleet`` (``--fleet N`` stations on one
broker: one alert, a broker restart, a crash loop; benchmarks/fleet.py; on by default with 100
stations in the full run, off in ``--quick``). A section that fails leaves its rows "not
measured" with the reason, and the suite exits 1; a figure that misses its target does not change the exit
code (machines differ — the table says it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    alert_figure,
    drain,
    fleet,
    gpio_alarm,
    live,
    machine,
    service_run,
    speech_bench,
)
from harness.figures import FIGURES, Figure
from harness.mosquitto import Mosquitto
from harness.station import ROOT
from harness.stats import Spread, percentile
from harness.text_first_sound import text_first_sound

RESULTS = ROOT / "benchmarks" / "results"
#: Compiled bytecode for every process of the suite, outside the source tree.
PYCACHE = RESULTS / "pycache"
SECTIONS = ("alert", "alertcpu", "speech", "gpio", "drain", "service", "live", "fleet")
#: Sections sized by benchmarks/fleet.py's FleetSizes (``--fleet N``) rather than Sizes.
FLEET_RUNNERS: dict[str, Callable[[Path, fleet.FleetSizes], dict[str, Any]]] = {
    "alertcpu": fleet.alert_cpu,
    "fleet": fleet.fleet_figures,
}


@dataclass(frozen=True)
class Sizes:
    """How much each section does, and how often."""

    readings: int  # ingest + drain
    drain_runs: int
    drain_settle_s: float
    alarms: int  # GPIO edges per run
    gpio_runs: int
    window_s: float  # service load window
    windows: int  # windows per service run
    service_runs: int
    settle_s: float  # service start-up left out of the windows
    outage_s: float
    outage_stations: int  # stations (each with its broker) going through outages side by side
    outages: int  # per station
    stable_s: float  # connected at least this long before each outage
    alerts: int
    alert_runs: int
    live_runs: int  # status answers and export (of `readings` readings)
    text_alerts: int  # uncached text alerts (each one plays ~1 s before it is cancelled)


FULL = Sizes(1_000_000, 3, 1.0, 200, 3, 60.0, 1, 3, 3.0, 30.0, 6, 4, 10.5, 200, 3, 3, 60)
QUICK = Sizes(100_000, 2, 1.0, 30, 2, 6.0, 2, 1, 3.0, 5.0, 3, 2, 10.5, 50, 1, 1, 20)
SMOKE = Sizes(2_000, 1, 0.2, 3, 1, 1.0, 1, 1, 0.5, 0.5, 1, 1, 0.0, 3, 1, 1, 3)
MODES = {"full": FULL, "quick": QUICK, "smoke": SMOKE}


def _section_alert(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    section = alert_figure.measure(workdir, sizes.alerts, sizes.alert_runs)
    setup = section.get("alert_setup")
    if setup:
        note = f"benchmarks/alert_latency.py, {sizes.alerts} alerts per run, broker: {setup}"
        section["notes"] = {"alert_p50_ms": [note], "alert_p99_ms": [note]}
    return section


def _section_speech(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    del workdir
    section = text_first_sound(sizes.text_alerts)
    section.update(speech_bench.cap_lengths())
    note = f"harness/text_first_sound.py, {sizes.text_alerts} alerts, each a new text"
    section["notes"] = {"text_p50_ms": [note], "text_p99_ms": [note]}
    return section


def _section_gpio(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    runs: list[list[float]] = []
    with Mosquitto() as broker:
        for n in range(sizes.gpio_runs):
            runs.append(gpio_alarm.measure_once(workdir / f"gpio-{n}", broker.port, sizes.alarms))
    return {
        "gpio_alarm_p99_ms": [percentile(run, 99) for run in runs],
        "gpio_alarm_p50_ms": [percentile(run, 50) for run in runs],
        "gpio_alarm_max_ms": [max(run) for run in runs],
    }


def _section_drain(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    runs = [
        drain.one_run(workdir / f"drain-{n}", sizes.readings, settle_s=sizes.drain_settle_s)
        for n in range(sizes.drain_runs)
    ]
    return {key: [run[key] for run in runs] for key in runs[0]}


def _section_service(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for n in range(sizes.service_runs):
        run = service_run.load_run(
            workdir / f"service-{n}",
            window_s=sizes.window_s,
            windows=sizes.windows,
            settle_s=sizes.settle_s,
        )
        for key, values in run.items():
            merged.setdefault(key, []).extend(values)
    merged["outage_recovery_s"] = service_run.outage_runs(
        workdir,
        stations=sizes.outage_stations,
        outages=sizes.outages,
        outage_s=sizes.outage_s,
        stable_s=sizes.stable_s,
    )
    merged["outage_recovery_s_schedule_median"] = [service_run.schedule_median(sizes.outage_s)]
    notes = [
        f"{sizes.outage_stations} stations × {sizes.outages} outages; the back-off schedule "
        f"alone predicts a median of {merged['outage_recovery_s_schedule_median'][0]:.1f} s"
    ]
    if sizes.outage_s < 30:
        notes.append(f"outage shortened to {sizes.outage_s:g} s")
    merged["notes"] = {"outage_recovery_s": notes}
    return merged


def _section_live(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    runs = [live.one_run(workdir / f"live-{n}", sizes.readings) for n in range(sizes.live_runs)]
    return {key: [run[key] for run in runs] for key in runs[0]}


SECTION_RUNNERS: dict[str, Callable[[Path, Sizes], dict[str, Any]]] = {
    "alert": _section_alert,
    "speech": _section_speech,
    "gpio": _section_gpio,
    "drain": _section_drain,
    "service": _section_service,
    "live": _section_live,
}
FIGURE_SECTION = {
    "alert_p50_ms": "alert",
    "alert_p99_ms": "alert",
    "text_p50_ms": "speech",
    "text_p99_ms": "speech",
    "cap_earthquake_s": "speech",
    "cap_earthquake_iso_s": "speech",
    "cap_weather_s": "speech",
    "cap_canada_s": "speech",
    "gpio_alarm_p99_ms": "gpio",
    "ingest_per_s": "drain",
    "drain_per_s": "drain",
    "drain_lost": "drain",
    "drain_duplicates": "drain",
    "bytes_per_reading_bulk": "drain",
    "rss_drain_mb": "drain",
    "cpu_us_per_reading": "drain",
    "outage_recovery_s": "service",
    "bytes_per_reading_service": "service",
    "rss_idle_mb": "service",
    "cpu_share_pct": "service",
    "export_s": "live",
    "export_rss_growth_mb": "live",
    "status_answer_p99_ms": "live",
    "alert_cpu_ms": "alertcpu",
    "fleet_playing_p50_s": "fleet",
    "fleet_playing_p99_s": "fleet",
    "fleet_playing_max_s": "fleet",
    "fleet_all_back_s": "fleet",
    "fleet_busiest_window_pct": "fleet",
    "crashloop_dup_per_record": "fleet",
}


def row(figure: Figure, sizes: Sizes, section: dict[str, Any] | None) -> dict[str, Any]:
    """One figure's entry of the JSON: label, target, median, spread, pass, the rival's figure."""
    label_args = {"fleet": "N", "kills": "N", **(section or {}).get("label_args", {})}
    label = figure.label.format(
        readings=sizes.readings, outage_s=sizes.outage_s, window_s=sizes.window_s, **label_args
    )
    entry: dict[str, Any] = {
        "key": figure.key,
        "label": label,
        "target": figure.target,
        "unit": figure.unit,
        "thingsboard_3_8_5": figure.thingsboard,
        "median": None,
        "min": None,
        "max": None,
        "runs": [],
        "pass": None,
    }
    values = (section or {}).get(figure.key)
    if not values:
        entry["note"] = (section or {}).get("note") or "not measured"
        return entry
    notes = [figure.note, *(section or {}).get("notes", {}).get(figure.key, [])]
    entry["note"] = "; ".join(note for note in notes if note)
    spread = Spread.of([float(v) for v in values])
    entry.update(
        median=spread.median,
        min=spread.low,
        max=spread.high,
        runs=list(spread.runs),
        **{"pass": figure.passes(spread)},
    )
    return entry


def _measured(figure: Figure, entry: dict[str, Any]) -> str:
    if entry["median"] is None:
        return str(entry.get("note", "not measured"))
    text = f"{figure.render(entry['median'])} {figure.unit}"
    runs = len(entry["runs"])
    if runs > 1:
        return f"{text} ({figure.render(entry['min'])}–{figure.render(entry['max'])}, {runs} runs)"
    return f"{text} (1 run)"


def table(rows: list[dict[str, Any]]) -> str:
    """The figures as a Markdown table (readable in a terminal, pasteable into the docs)."""
    lines = [
        "| figure | target | measured: median (min–max, runs) | pass | ThingsBoard IoT Gateway 3.8.5 |",
        "|---|---|---|---|---|",
    ]
    figures = {f.key: f for f in FIGURES}
    for entry in rows:
        verdict = {True: "pass", False: "FAIL", None: "—"}[entry["pass"]]
        measured = _measured(figures[entry["key"]], entry)
        lines.append(
            f"| {entry['label']} | {entry['target']} | {measured} | {verdict} "
            f"| {entry['thingsboard_3_8_5']} |"
        )
    notes = [
        f"- {entry['label']}: {entry['note']}"
        for entry in rows
        if entry["median"] is not None and entry.get("note")
    ]
    return "\n".join(lines + (["", *notes] if notes else []))


def details(sections: dict[str, dict[str, Any]]) -> str:
    """The secondary figures of each section (medians), for reading the table."""
    keys = {f.key for f in FIGURES}
    lines = []
    for name, section in sections.items():
        extra = {
            k: v
            for k, v in section.items()
            if k not in keys and isinstance(v, list) and v and isinstance(v[0], int | float)
        }
        for key, values in extra.items():
            spread = Spread.of([float(v) for v in values])
            lines.append(
                f"  {name:8} {key:44} {spread.median:14,.3f}  "
                f"({spread.low:,.3f}–{spread.high:,.3f}, {len(values)})"
            )
    return "\n".join(lines)


def as_installed() -> None:
    """Let every process of the suite load compiled bytecode, as an installed station does.

    pip and Debian install Python code with its .pyc files; a process that compiles every
    module from source at start (PYTHONDONTWRITEBYTECODE with no cache) needs more memory and
    time than the real service. The cache goes under benchmarks/results/ (gitignored), and
    one import of the whole service fills it before anything is measured.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    modules = (
        "gateway.cli.main, gateway.service, gateway.status.model, gateway.store.export, benchmarks.gpio_alarm, "
        "benchmarks.ingest"
    )
    subprocess.run([sys.executable, "-c", f"import {modules}"], cwd=ROOT, check=True, timeout=300)


def run(
    mode: str,
    sizes: Sizes,
    only: tuple[str, ...],
    workdir: Path,
    fleet_sizes: fleet.FleetSizes | None = None,
) -> dict[str, Any]:
    """Run the chosen sections; the whole result document."""
    fleet_sizes = fleet_sizes or fleet.FLEET_MODES[mode]
    started = time.monotonic()
    described = machine.describe(workdir)
    as_installed()
    sections: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for name in only:
        print(f"[{time.monotonic() - started:6.1f} s] {name} …", file=sys.stderr, flush=True)
        try:
            if name in FLEET_RUNNERS:
                sections[name] = FLEET_RUNNERS[name](workdir, fleet_sizes)
            else:
                sections[name] = SECTION_RUNNERS[name](workdir, sizes)
        except Exception as exc:
            traceback.print_exc()
            errors[name] = f"not measured: {type(exc).__name__}: {exc}"[:500]
            sections[name] = {"note": errors[name]}
    rows = [
        row(figure, sizes, sections.get(FIGURE_SECTION[figure.key]))
        for figure in FIGURES
        if FIGURE_SECTION[figure.key] in only
    ]
    return {
        "suite": "cunxiang benchmarks (docs/performance.md § Targets)",
        "mode": mode,
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "machine": {**described, "load_average_at_end": machine.load_average()},
        "sizes": dataclasses.asdict(sizes),
        "fleet_sizes": dataclasses.asdict(fleet_sizes),
        "figures": rows,
        "sections": sections,
        "errors": errors,
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes (the pytest smoke test)")
    parser.add_argument("--runs", type=int, help="runs per figure (overrides the mode's)")
    parser.add_argument(
        "--only", help=f"sections, of {', '.join(SECTIONS)} (default: all; fleet if --fleet)"
    )
    parser.add_argument(
        "--fleet",
        type=int,
        metavar="N",
        help="stations in the fleet section (default: 100 full, off in --quick, 3 in --smoke; "
        "0 turns it off)",
    )
    parser.add_argument("--json", type=Path, help="write the result here (default: results/)")
    parser.add_argument(
        "--workdir", type=Path, help="where databases go (default: under benchmarks/results/)"
    )
    return parser.parse_args(argv)


def _sizes(args: argparse.Namespace) -> tuple[str, Sizes]:
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    sizes = MODES[mode]
    if args.runs:
        sizes = dataclasses.replace(
            sizes,
            drain_runs=args.runs,
            gpio_runs=args.runs,
            service_runs=args.runs,
            outage_stations=args.runs,
            alert_runs=args.runs,
            live_runs=args.runs,
        )
    return mode, sizes


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    mode, sizes = _sizes(args)
    fleet_sizes = fleet.FLEET_MODES[mode]
    if args.fleet is not None:
        fleet_sizes = dataclasses.replace(fleet_sizes, fleet=max(0, args.fleet))
    if args.runs:
        fleet_sizes = dataclasses.replace(fleet_sizes, cpu_runs=args.runs)
    default = [s for s in SECTIONS if s != "fleet" or fleet_sizes.fleet]
    only = tuple(s.strip() for s in (args.only or ",".join(default)).split(",") if s.strip())
    if "fleet" in only and not fleet_sizes.fleet:
        print("the fleet section needs --fleet N (N > 0)", file=sys.stderr)
        return 2
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        print(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    parent = args.workdir or RESULTS
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="work-", dir=parent))
    try:
        result = run(mode, sizes, only, workdir, fleet_sizes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.json or RESULTS / f"suite-{mode}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(_report(result, path))
    return 1 if result["errors"] else 0


def _report(result: dict[str, Any], path: Path) -> str:
    m = result["machine"]
    head = (
        f"Cunxiang benchmarks, {result['mode']} run, {result['duration_s']:.0f} s, "
        f"finished {result['finished']}\n"
        f"machine: {m['cores']} cores, {m['cpu']}, {m['memory_mb']:,} MB, Linux {m['kernel']}; "
        f"Python {m['python']}, SQLite {m['sqlite']}, Mosquitto {m['mosquitto']}, "
        f"paho-mqtt {m['paho_mqtt']}; database on {m['database_filesystem']}\n"
        f"load average (1, 5, 15 min) at start {m['load_average_at_start']}, "
        f"at end {m['load_average_at_end']}\n"
        f"command: {result['command']}\n"
    )
    extra = details(result["sections"])
    return (
        f"{head}\n{table(result['figures'])}\n\n"
        f"details (medians of the runs):\n{extra}\n\nJSON: {path}"
    )
