"""The technician's live view: status answers and the USB-stick export, on a station with a backlog.

Why this module exists: two promises of issue 15 are figures, not tests — a status request takes
the service no more than a few milliseconds, and ``cunxiang export`` writes a million readings in
under 30 s with memory that does not grow with the number of readings. A run:

* ingests N readings into a new database (benchmarks/ingest.py): the backlog of a station whose
  uplink has been down;
* starts ``cunxiang run`` on it with 10 simulated sensors at 1 Hz and no reachable broker, so the
  service keeps writing while it is asked and exported;
* asks its status socket 200 times: the time the service spends on each answer (``answer_ms``,
  wall clock, and ``answer_cpu_ms``, its thread's CPU, measured inside the service) and the
  client's round trip;
* runs ``cunxiang export --out FILE`` (jsonl) on everything, and again on the first tenth of the
  readings (``--until``): the wall time of the whole one, and the peak RSS of both (wait4's
  ru_maxrss). Flat memory means the two peaks are the same: the figure is their difference.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.drain import run_ingest
from benchmarks.rig import Service, simulated_sensors, write_config
from gateway.status.server import ask_service, socket_path
from harness import procstat
from harness.mosquitto import free_port
from harness.station import ROOT, service_env
from harness.stats import percentile

STATUS_REQUESTS = 200


def one_run(folder: Path, readings: int) -> dict[str, float]:
    """One ingest, status and export run over `readings` readings; its figures."""
    folder.mkdir(parents=True)
    try:
        db = folder / "station.db"
        run_ingest(db, readings)
        config = write_config(folder, free_port(), body=simulated_sensors(10))
        service = Service(config)
        try:
            service.wait_ready()
            figures = _status(db)
            figures.update(_exports(config, db, folder, readings))
            service.stop()
        finally:
            service.kill()
        return figures
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _status(db: Path) -> dict[str, float]:
    sock = socket_path(db, {})
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    answers, cpu, trips = [], [], []
    for _ in range(STATUS_REQUESTS):
        started = time.perf_counter()
        reply = ask_service([sock], db, timeout_s=5.0)
        trips.append((time.perf_counter() - started) * 1000)
        answers.append(float(reply["answer_ms"]))
        cpu.append(float(reply["answer_cpu_ms"]))
        time.sleep(0.005)
    return {
        "status_answer_p99_ms": percentile(answers, 99),
        "status_answer_p50_ms": percentile(answers, 50),
        "status_answer_max_ms": max(answers),
        "status_answer_cpu_p99_ms": percentile(cpu, 99),
        "status_roundtrip_p50_ms": percentile(trips, 50),
    }


def _export(config: Path, out: Path, *args: str) -> tuple[float, procstat.Exit]:
    command = [sys.executable, "-m", "gateway", "export", "-c", str(config), "--out", str(out)]
    started = time.monotonic()
    proc = subprocess.Popen(
        [*command, *args],
        cwd=ROOT,
        env=service_env(config.parent),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    done = procstat.wait_exit(proc, 600)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"cunxiang export exited with {done.returncode}")
    return seconds, done


def _exports(config: Path, db: Path, folder: Path, readings: int) -> dict[str, float]:
    out = folder / "export.jsonl"
    seconds, whole = _export(config, out)
    with out.open("rb") as file:
        lines = sum(1 for _ in file)
    if lines < readings:
        raise RuntimeError(f"the export holds {lines} records, fewer than {readings} readings")
    out.unlink()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tenth_ts = conn.execute(
            "SELECT ts FROM outbox WHERE seq >= ? ORDER BY seq LIMIT 1", (readings // 10,)
        ).fetchone()[0]
    until = dt.datetime.fromtimestamp(tenth_ts / 1000).astimezone().isoformat()
    _, tenth = _export(config, out, "--until", until)
    return {
        "export_s": seconds,
        "export_per_s": lines / seconds,
        "export_rss_mb": whole.maxrss_kb / 1024,
        "export_rss_tenth_mb": tenth.maxrss_kb / 1024,
        "export_rss_growth_mb": (whole.maxrss_kb - tenth.maxrss_kb) / 1024,
    }
