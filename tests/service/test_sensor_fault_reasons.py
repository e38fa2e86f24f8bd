"""The centre hears each reason of a sensor fault, not only the first (docs/protocol.md §5).

A CO module that first sends corrupted frames and is then unplugged has two
different problems for a technician: the centre must see `bad_frames`, then
`port_unavailable`, then `sensor_ok` once it is back.
"""

from __future__ import annotations

import json
from pathlib import Path

from drivers.ze07_co import active_frame
from harness.mosquitto import Mosquitto, Subscriber
from harness.serial_ports import PtyPort
from harness.station import StationProcess, station_topic, wait_until, write_config
from tests.drivers.devices import PeriodicWriter


def health_events(sub: Subscriber) -> list[tuple[str, str]]:
    found = [json.loads(m.payload) for m in sub.on(station_topic("event"))]
    return [
        (e["type"], e.get("reason", ""))
        for e in found
        if e["type"] in ("sensor_fault", "sensor_ok") and e["sensor"] == "co-1"
    ]


def test_fault_reason_changes_and_recovery_reach_the_centre(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "ttyCO")
    corrupt = bytearray(active_frame(120))
    corrupt[-1] ^= 0xFF  # wrong checksum
    writer = PeriodicWriter(port, lambda: bytes(corrupt), 0.05)
    body = f"""
[[sensors]]
name = "co-1"
type = "ze07_co"
port = "{port.path}"
timeout_s = 30
"""
    with Mosquitto() as broker:
        sub = Subscriber(broker.port, [station_topic("#")])
        station = StationProcess(write_config(tmp_path, broker.port, body=body)).start()
        try:
            wait_until(lambda: health_events(sub), 15, "the first fault")
            assert health_events(sub) == [("sensor_fault", "bad_frames")]
            writer.stop()
            port.unplug()
            wait_until(lambda: len(health_events(sub)) >= 2, 10, "the second reason")
            port.plug()
            good = PeriodicWriter(port, lambda: active_frame(120), 0.1)
            wait_until(lambda: len(health_events(sub)) >= 3, 15, "recovery")
            good.stop()
            assert health_events(sub) == [
                ("sensor_fault", "bad_frames"),
                ("sensor_fault", "port_unavailable"),
                ("sensor_ok", ""),
            ]
            assert station.terminate() == 0
        finally:
            station.close()
            sub.close()
            port.close()
