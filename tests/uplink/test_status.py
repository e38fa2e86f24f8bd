"""`cunxiang status`: read from the database, also while the station runs."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from click.testing import CliRunner

from gateway.cli.status import status
from gateway.store.alert_records import AlertRecord
from harness.mosquitto import Mosquitto
from tests.uplink.conftest import AREA, add_readings, config_data, running, write_config
from tests.uplink.conftest import make_config as build_config


def status_of(config_file: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(status, ["-c", str(config_file), *args])
    return result.exit_code, result.output


def test_status_while_running_and_after_stop(tmp_path: Path, broker: Mosquitto) -> None:
    data = config_data(tmp_path, broker.port)
    config_file = write_config(tmp_path / "gateway.toml", data)
    config = build_config(tmp_path, broker.port)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        async with running(config) as station:
            store = station.store
            store.set_status(pid=os.getpid(), boot="b00t", audio="idle", clock_synced=True)
            store.add_reading("river", "water_level_m", 1.25, 1767225600000)
            store.add_reading("co-1", "co_ppm", 12.0, 1767225600500)
            store.add_event("sensor_fault", {"sensor": "co-1", "reason": "no_data"})
            store.alerts.remember(
                "371581-20260701-0007",
                AlertRecord(kind="central", level="red", alert={"event": "flood"}),
            )
            store.add_receipt("371581-20260701-0007", "played", {"duration_s": 20.5})
            store.flush()
            await station.until(lambda: store.backlog()[0] == 0, 10, "an empty backlog")
            # Status and acknowledgements are saved at most every 5 s (STATE_SAVE_S) unless a
            # flush forces it: waiting 0.3 s missed a connect that came after the flush above.
            store.flush()
            seen["json"] = await asyncio.to_thread(status_of, config_file, "--json")
            seen["text"] = await asyncio.to_thread(status_of, config_file)

    asyncio.run(scenario())
    code, output = seen["json"]  # type: ignore[misc]
    assert code == 0, output
    doc = json.loads(output)
    assert doc["online"] is True and doc["service_running"] is True
    assert doc["broker_connected"] is True and isinstance(doc["last_publish_ts"], int)
    assert doc["backlog"] == 0 and doc["oldest_unsent_ts"] is None and doc["area"] == AREA
    assert doc["sensors"] == {"co-1": "fault", "river": "ok"}
    values = {(r["sensor"], r["q"]): r["v"] for r in doc["last_readings"]}
    assert values == {("river", "water_level_m"): 1.25, ("co-1", "co_ppm"): 12.0}
    assert [a["id"] for a in doc["alerts"]] == ["371581-20260701-0007"]
    assert doc["receipts"][0]["status"] == "played" and doc["receipts"][0]["duration_s"] == 20.5
    code, text = seen["text"]  # type: ignore[misc]
    assert code == 0
    assert "Service:   running" in text and "Broker:    connected" in text
    assert "FAULT no_data" in text and "371581-20260701-0007" in text

    code, text = status_of(config_file)
    assert code == 0 and "NOT RUNNING" in text and "NOT connected" in text


def test_status_reports_the_backlog_while_the_broker_is_away(tmp_path: Path) -> None:
    port = Mosquitto().port  # nothing listens there
    config_file = write_config(tmp_path / "gateway.toml", config_data(tmp_path, port))

    async def scenario() -> tuple[int, str]:
        async with running(build_config(tmp_path, port)) as station:
            add_readings(station.store, 1_234)
            station.store.flush()
            await asyncio.sleep(0.3)
            return await asyncio.to_thread(status_of, config_file, "--json")

    code, output = asyncio.run(scenario())
    assert code == 0, output
    doc = json.loads(output)
    assert doc["backlog"] == 1_234 and doc["broker_connected"] is False
    assert isinstance(doc["oldest_unsent_ts"], int)


def test_status_without_a_database_says_so(tmp_path: Path) -> None:
    config_file = write_config(tmp_path / "gateway.toml", config_data(tmp_path, 1883))
    code, output = status_of(config_file)
    assert code == 2 and "no database yet" in output and "gateway.db" in output


def test_status_on_a_foreign_database_says_so_and_leaves_it(tmp_path: Path) -> None:
    import sqlite3

    config_file = write_config(tmp_path / "gateway.toml", config_data(tmp_path, 1883))
    other = sqlite3.connect(tmp_path / "gateway.db")
    other.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    other.commit()
    other.close()
    before = (tmp_path / "gateway.db").read_bytes()
    code, output = status_of(config_file)
    assert code == 2 and "another program" in output
    assert (tmp_path / "gateway.db").read_bytes() == before
