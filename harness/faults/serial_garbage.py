"""Scenario 5: garbage, partial frames, silences and unplugging on every serial port.

Why this module exists: one scenario, one module, called small by tests/faults/ and at full
size by benchmarks/chaos.py. See harness/faults/__init__.py for what the scenarios count and
docs/faults.md for what they found.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from drivers.ze07_co import active_frame
from harness.faults.common import ScenarioResult
from harness.faults.station import FaultStation
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.proc_watch import ProcWatch
from harness.serial_noise import (
    JSONL_GOOD,
    ZE07_GOOD_TENTHS,
    NoisyLine,
    NoisyTransmitter,
    Replugger,
    spurious_ze07_frames,
)
from harness.serial_ports import PtyPort, SocatPair
from harness.sounds import sine_pcm, write_clip
from harness.station import Centre, write_config

GENUINE_VALUES = {"co-1": 12.3, "node-1": 21.5, "river": 1.23}


def serial_garbage(
    folder: Path, *, seconds: float, seed: int, warmup_s: float = 5.0
) -> ScenarioResult:
    """Every serial port fed noise, partial frames and silences for `seconds`; genuine frames between.

    Ports: a ZE07-CO on a pty, a JSON-lines node on a pty that is also unplugged and plugged
    back every few seconds, a Modbus level transmitter on a socat pair that answers each poll
    with a good reply, noise, half a reply or nothing. Every
    sensor has a rule with a local broadcast, so a false alarm would be both an ``alarm`` event
    and sound. What must hold: no alarm, no sound, only genuine values as readings (except
    what the driver's own parser accepts from the same bytes — an 8-bit checksum collision,
    counted separately), ``sensor_fault`` events for every sensor (``port_unavailable`` among
    them), the service alive, and RSS and open descriptors flat after warm-up.
    """
    result = ScenarioResult(f"5 garbage on every serial port for {seconds:g} s")
    folder.mkdir(parents=True, exist_ok=True)
    with Mosquitto() as broker:
        co, node, pair = PtyPort(folder / "ttyCO"), PtyPort(folder / "ttyNODE"), SocatPair(folder)
        pair.start()
        device = os.open(pair.server, os.O_RDWR | os.O_NOCTTY)
        centre = Centre()
        config = write_config(folder, broker.port, centre, body=_garbage_body(co, node, pair))
        write_clip(folder / "clips", "beep", sine_pcm(1000, 0.2))
        ledger = Ledger(port=broker.port)
        station = FaultStation(config)
        lines: list[Any] = []
        replug = Replugger(node, seed + 3, every_s=(4.0, 8.0), out_s=(0.5, 3.0))
        try:
            station.start()
            station.wait_ready()
            watch = ProcWatch(station.pid)
            lines = [
                NoisyLine(co.master, active_frame(ZE07_GOOD_TENTHS), seed).start(),
                NoisyLine(node.master, JSONL_GOOD, seed + 1, write=replug.write).start(),
                NoisyTransmitter(device, seed + 2).start(),
            ]
            replug.start()
            time.sleep(seconds)
            replug.stop()
            for line in lines:
                line.stop()
            watch.stop()
            time.sleep(1.0)
            crashed = station.exited_by_itself() is not None
            exit_code = station.terminate(timeout=10) if not crashed else -1
        finally:
            replug.stop()
            for line in lines:
                line.stop()
            station.close()
            ledger.close()
            os.close(device)
            pair.stop()
            co.close()
            node.close()
        spurious = spurious_ze07_frames(bytes(lines[0].written))
        foreign = [
            r for r in ledger.readings.values() if r["v"] != GENUINE_VALUES.get(r["sensor"], r["v"])
        ]
        fault_events = ledger.events_of("sensor_fault")
        faults = {e["sensor"] for e in fault_events}
        result.crashes = int(crashed) + (exit_code != 0)
        result.sounded = int(any(not c.is_silent() for c in station.captures))
        rss = watch.summary(after_s=warmup_s)
        result.details = {
            "seed": seed,
            "seconds": seconds,
            "alarms": len(ledger.events_of("alarm")),
            "loudspeaker_silent": not result.sounded,
            "readings": len(ledger.readings),
            # Genuine frames the lines wrote, and readings of each sensor that reached the centre:
            # a frame glued to a partial one or to noise is lost with it (a JSON line always is).
            "genuine_frames_written": {
                "co-1": lines[0].stats.segments["frame"],
                "node-1": lines[1].stats.segments["frame"],
                "river": lines[2].stats.segments["reply"],
            },
            "readings_by_sensor": dict(Counter(r["sensor"] for r in ledger.readings.values())),
            "readings_with_values_no_device_sent": len(foreign),
            "checksum_collisions_in_ze07_stream": spurious,
            "sensors_with_fault_events": sorted(faults),
            "fault_reasons": sorted({str(e.get("reason")) for e in fault_events}),
            "sensor_fault_events": len(fault_events),
            "node_unplugged": replug.unplugs,
            # The service reports one sensor_fault per episode (a reason that changes inside
            # an episode is not sent again), so the unplug is seen in the driver's log line.
            "node_unplugs_noticed_by_driver": station.log().count("node-1 fault: port_unavailable"),
            "sensor_ok_events": len(ledger.events_of("sensor_ok")),
            "segments": [line.stats.segments for line in lines],
            "bytes_written": sum(line.stats.bytes_written for line in lines),
            "memory": rss,
            "rss_growth_kib_after_warmup": rss["rss_kib"]["growth"],
            "station_exit_code": exit_code,
        }
        result.notes += [f"reading no device sent: {r}" for r in foreign[:5]]
    return result


def _garbage_body(co: PtyPort, node: PtyPort, pair: SocatPair) -> str:
    beep = 'broadcast = { clip = "beep", repeat = 1 }'
    return f"""
[[sensors]]
name = "co-1"
type = "ze07_co"
port = "{co.path}"
timeout_s = 2

[[sensors]]
name = "node-1"
type = "jsonl"
port = "{node.path}"
timeout_s = 2

[[sensors]]
name = "river"
type = "modbus_level"
port = "{pair.client}"
register = 4
decimals_register = 3
poll_s = 0.3
timeout_s = 2
retries = 1

[[rules]]
name = "co-danger"
sensor = "co-1"
above = 50
clear_below = 35
for_s = 2
level = "orange"
{beep}

[[rules]]
name = "node-hot"
sensor = "node-1"
quantity = "temperature_c"
above = 40
level = "orange"
{beep}

[[rules]]
name = "river-high"
sensor = "river"
above = 3.0
level = "red"
{beep}
"""
