"""`cunxiang export` while `cunxiang run` writes: what the USB stick gets is what the centre got.

One real station (two simulated sensors) runs against a private Mosquitto for the module; the
centre subscribes. Exports are taken with the real command line in a subprocess while the
service keeps writing. The jsonl records must equal the centre's (seq, ts, sensor, q, v) and
events; csv has its header and the same readings; bad input exits 1 saying what would work.
The service itself must never load sqlite-utils (the export's library): its import log shows.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.mosquitto import Mosquitto, Subscriber
from harness.station import (
    ROOT,
    STATION_ID,
    StationProcess,
    station_topic,
    wait_until,
    write_config,
)

SENSORS = """
[[sensors]]
name = "river"
type = "simulated"
quantity = "water_level_m"
pattern = "random_walk"
low = 0.5
high = 1.5
seed = 7
interval_s = 0.05

[[sensors]]
name = "co-1"
type = "simulated"
quantity = "co_ppm"
pattern = "script"
values = [3, 4, 5000]
interval_s = 0.1
"""
TELEMETRY = station_topic("telemetry")
EVENT = station_topic("event")


@dataclass
class Running:
    station: StationProcess
    centre: Subscriber

    @property
    def config(self) -> Path:
        return self.station.config

    def readings(self) -> list[dict[str, Any]]:
        return [r for m in self.centre.on(TELEMETRY) for r in json.loads(m.payload)["readings"]]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.centre.on(EVENT)]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("export")
    with Mosquitto() as broker:
        centre = Subscriber(broker.port, [station_topic("#")])
        config = write_config(folder, broker.port, body=SENSORS)
        # -X importtime: every module the service imports is listed in its log.
        env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
        station = StationProcess(config, env=env).start()
        try:
            run = Running(station, centre)
            wait_until(lambda: len(run.readings()) >= 40, 20, "40 readings at the centre")
            wait_until(
                lambda: any(e["type"] == "sensor_fault" for e in run.events()),
                10,
                "the co-1 fault event at the centre",
            )
            yield run
        finally:
            station.close()
            centre.close()


def export(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "export", "-c", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_the_service_never_imports_sqlite_utils(running: Running) -> None:
    imported = re.findall(r"^import time:.*\|\s+(\S+)$", running.station.log(), re.M)
    assert "gateway.service" in imported and "gateway.cli.export" in imported
    assert not [name for name in imported if name.startswith("sqlite_utils")]


def test_jsonl_records_are_what_the_centre_received(running: Running, tmp_path: Path) -> None:
    at_centre = running.readings()
    events_at_centre = running.events()
    out = tmp_path / "stick" / "records.jsonl"
    out.parent.mkdir()
    done = export(running.config, "--out", str(out))  # the service writes meanwhile
    assert done.returncode == 0, done.stderr
    assert "records (jsonl)" in done.stderr
    records = jsonl(out.read_text(encoding="utf-8"))
    assert all(r["station"] == STATION_ID for r in records)
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(set(seqs))
    readings = {r["seq"]: r for r in records if "type" not in r}
    for reading in at_centre:
        mine = readings[reading["seq"]]
        assert list(mine)[:6] == ["station", "seq", "ts", "sensor", "q", "v"]
        assert {k: v for k, v in mine.items() if k != "station"} == reading
    events = {r["seq"]: r for r in records if "type" in r}
    for event in events_at_centre:
        assert {k: v for k, v in events[event["seq"]].items() if k != "station"} == event
    assert {"started", "sensor_fault"} <= {e["type"] for e in events.values()}


def test_csv_has_its_header_and_the_same_readings(running: Running) -> None:
    until = running.readings()[-1]["ts"] + 1
    until_iso = dt.datetime.fromtimestamp(until / 1000).isoformat(timespec="milliseconds")
    as_csv = export(running.config, "--format", "csv", "--until", until_iso)
    as_jsonl = export(running.config, "--until", until_iso)
    assert as_csv.returncode == 0 and as_jsonl.returncode == 0, as_csv.stderr + as_jsonl.stderr
    assert as_csv.stdout.splitlines()[0] == "seq,ts,time,sensor,q,v,flags"
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    readings = [r for r in jsonl(as_jsonl.stdout) if "type" not in r]
    assert len(rows) == len(readings) > 40
    for row, reading in zip(rows, readings, strict=True):
        assert int(row["seq"]) == reading["seq"] and int(row["ts"]) == reading["ts"]
        assert (row["sensor"], row["q"]) == (reading["sensor"], reading["q"])
        assert json.loads(row["v"]) == reading["v"]
        assert row["flags"] == ";".join(reading.get("flags", []))
        when = dt.datetime.fromisoformat(row["time"])
        assert when.utcoffset() is not None and round(when.timestamp() * 1000) == reading["ts"]
    assert max(r["ts"] for r in readings) < until


def test_one_sensor_and_a_time_range(running: Running) -> None:
    records = jsonl(export(running.config, "--sensor", "co-1", "--since", "1h").stdout)
    assert {r.get("sensor") for r in records} == {"co-1"}
    assert any(r.get("type") == "sensor_fault" for r in records)
    assert any(r.get("q") == "co_ppm" for r in records)
    assert jsonl(export(running.config, "--until", "1h").stdout) == []


def test_bad_input_says_what_would_work(running: Running, tmp_path: Path) -> None:
    unknown = export(running.config, "--sensor", "rivre")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "rivre" in unknown.stderr and "co-1, river" in unknown.stderr

    for option in ("--since", "--until"):
        bad = export(running.config, option, "three days")
        assert bad.returncode == 1 and bad.stdout == ""
        assert option in bad.stderr and "3d" in bad.stderr and "2026-07-01T08:00" in bad.stderr

    empty = tmp_path / "other"
    empty.mkdir()
    config = write_config(empty, 1883)
    missing = export(config)
    assert missing.returncode == 1 and missing.stdout == ""
    assert str(empty / "station.db") in missing.stderr and "no database" in missing.stderr
    assert not (empty / "station.db").exists()  # looking did not create one
