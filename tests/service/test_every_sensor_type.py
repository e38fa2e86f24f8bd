"""`cunxiang run` with one sensor of each type, each wired to a simulator, seen from the centre.

The issue's "done" line for the drivers: readings, faults and alarms reach a
subscriber at the centre exactly as docs/protocol.md §4–§5 describe. Serial sensors
are pseudo-terminals carrying real frames; the Modbus transmitter is a real
pymodbus RTU server over socat; GPIO pins are gpiozero's mock pins inside the
service process (nothing outside can drive them, so they report their idle
state); the simulator is the real `simulated` driver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.ze07_co import active_frame
from harness.mosquitto import Mosquitto, Subscriber
from harness.serial_ports import PtyPort, SocatPair
from harness.station import StationProcess, station_topic, wait_until, write_config
from tests.drivers.devices import ModbusTransmitter, PeriodicWriter


def body(folder: Path, co: PtyPort, node: PtyPort, rs485: Path) -> str:
    return f"""
[[sensors]]
name = "co-1"
type = "ze07_co"
port = "{co.path}"
timeout_s = 3

[[sensors]]
name = "river"
type = "modbus_level"
port = "{rs485}"
register = 4
decimals_register = 3
poll_s = 0.3
timeout_s = 3

[[sensors]]
name = "smoke-1"
type = "gpio_contact"
pin = 17
report_s = 1

[[sensors]]
name = "rain"
type = "gpio_pulse"
pin = 22
report_s = 1

[[sensors]]
name = "node-3"
type = "jsonl"
port = "{node.path}"
timeout_s = 2

[[sensors]]
name = "sim"
type = "simulated"
quantity = "temperature_c"
pattern = "script"
values = [20.0, 21.0, 22.0]
interval_s = 0.3

[[rules]]
name = "co-danger"
sensor = "co-1"
above = 50
clear_below = 35
level = "orange"

[[rules]]
name = "river-high"
sensor = "river"
above = 3.0
level = "red"
"""


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[dict[str, Any]]:
    co = PtyPort(tmp_path / "ttyCO")
    node = PtyPort(tmp_path / "ttyNODE")
    socat = SocatPair(tmp_path)
    socat.start()
    # 0x0003 decimals = 2, 0x0004 value = 123 -> 1.23 m
    modbus = ModbusTransmitter(socat.server, unit=1, registers={3: 2, 4: 123}).start()
    co_level = {"tenths": 120}  # 12.0 ppm
    co_writer = PeriodicWriter(co, lambda: active_frame(co_level["tenths"]), 0.2)
    node_writer = PeriodicWriter(node, lambda: b'{"q": "battery_v", "v": 3.7}\n', 0.2)
    yield {
        "co": co,
        "node": node,
        "rs485": socat.client,
        "co_level": co_level,
        "modbus": modbus,
        "node_writer": node_writer,
    }
    co_writer.stop()
    node_writer.stop()
    modbus.stop()
    socat.stop()
    co.close()
    node.close()


def readings(sub: Subscriber) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in sub.on(station_topic("telemetry")):
        out.extend(json.loads(message.payload)["readings"])
    return out


def events(sub: Subscriber, type_: str) -> list[dict[str, Any]]:
    found = [json.loads(m.payload) for m in sub.on(station_topic("event"))]
    return [e for e in found if e["type"] == type_]


def test_one_sensor_of_each_type_reaches_the_centre(
    tmp_path: Path, devices: dict[str, Any]
) -> None:
    with Mosquitto() as broker:
        sub = Subscriber(broker.port, [station_topic("#")])
        config = write_config(
            tmp_path,
            broker.port,
            body=body(tmp_path, devices["co"], devices["node"], devices["rs485"]),
        )
        station = StationProcess(config).start()
        try:
            expected = {
                ("co-1", "co_ppm"),
                ("river", "water_level_m"),
                ("smoke-1", "smoke"),
                ("rain", "rain_mm"),
                ("node-3", "battery_v"),
                ("sim", "temperature_c"),
            }

            def all_seen() -> bool:
                return expected <= {(r["sensor"], r["q"]) for r in readings(sub)}

            wait_until(all_seen, 15, f"readings of every sensor type; log:\n{station.log()}")
            values = {(r["sensor"], r["q"]): r["v"] for r in readings(sub)}
            assert values[("co-1", "co_ppm")] == pytest.approx(12.0)
            assert values[("river", "water_level_m")] == pytest.approx(1.23)
            assert values[("smoke-1", "smoke")] is False
            assert values[("rain", "rain_mm")] == 0
            assert values[("node-3", "battery_v")] == pytest.approx(3.7)

            # CO rises past its alarm line; the river transmitter reports 3.50 m.
            devices["co_level"]["tenths"] = 800
            devices["modbus"].set_register(4, 350)
            wait_until(lambda: len(events(sub, "alarm")) >= 2, 10, "two alarm events")
            alarms = {e["rule"]: e for e in events(sub, "alarm")}
            assert alarms["co-danger"]["level"] == "orange"
            assert alarms["co-danger"]["value"] == pytest.approx(80.0)
            assert alarms["river-high"]["level"] == "red"
            assert alarms["river-high"]["value"] == pytest.approx(3.5)

            # It clears with hysteresis.
            devices["co_level"]["tenths"] = 300
            wait_until(lambda: events(sub, "alarm_cleared"), 10, "alarm_cleared")
            assert events(sub, "alarm_cleared")[0]["rule"] == "co-danger"

            # The microcontroller falls silent: a sensor_fault, and the state says so.
            devices["node_writer"].stop()
            fault = wait_until(
                lambda: [e for e in events(sub, "sensor_fault") if e["sensor"] == "node-3"],
                10,
                "sensor_fault for node-3",
            )[0]
            assert fault["reason"] == "no_data"

            def state_shows_fault() -> bool:
                states = [json.loads(m.payload) for m in sub.on(station_topic("state"))]
                return any(s.get("sensors", {}).get("node-3") == "fault" for s in states)

            wait_until(state_shows_fault, 10, "state with node-3 in fault")

            # seq is one strictly increasing sequence across readings and events.
            seqs = [r["seq"] for r in readings(sub)]
            seqs += [json.loads(m.payload)["seq"] for m in sub.on(station_topic("event"))]
            assert len(seqs) == len(set(seqs))
            assert station.terminate() == 0
        finally:
            station.close()
            sub.close()
