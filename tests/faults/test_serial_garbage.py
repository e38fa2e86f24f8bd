"""Scenario 5: every serial port fed random bytes, partial frames and long silences for 30 s.

A ZE07-CO and a JSON-lines node on pseudo-terminals (the node's USB plug also pulled out and
put back every few seconds), a Modbus level transmitter on a socat pair
that answers polls with good replies, noise, half replies or nothing (harness/serial_noise.py).
Each sensor has a rule with a local broadcast, so a false alarm would be heard. What must hold:
no ``alarm`` event and silent loudspeakers, no reading of a value no device sent (beyond what
the ZE07's 8-bit checksum lets through from these very bytes, predicted by replaying them through
the driver's parser — zero for the default seed), a ``sensor_fault`` event for every sensor,
the service alive and exiting 0, its resident memory and open descriptors flat after warm-up.
"""

from __future__ import annotations

from pathlib import Path

from harness.faults import serial_garbage
from tests.faults.conftest import report

SECONDS = 30
#: RSS may move by a few pages (allocator, SQLite page cache); a per-byte or per-frame leak
#: over 30 s of noise would show as hundreds of KiB.
MAX_RSS_GROWTH_KIB = 1024


def test_garbage_on_every_serial_port_raises_faults_but_no_alarm(tmp_path: Path, seed: int) -> None:
    result = serial_garbage(tmp_path, seconds=SECONDS, seed=seed)
    text = report(result)
    details = result.details
    collisions = details["checksum_collisions_in_ze07_stream"]
    assert details["readings_with_values_no_device_sent"] == len(collisions), text
    if not any(value > 50 for value in collisions):  # the seed sends nothing that could trip
        assert details["alarms"] == 0, text
        assert result.sounded == 0, text
    assert details["sensors_with_fault_events"] == ["co-1", "node-1", "river"], text
    assert details["node_unplugged"] > 0, text
    assert details["node_unplugs_noticed_by_driver"] > 0, text
    assert details["sensor_ok_events"] > 0, text  # genuine frames between the noise end the faults
    assert result.crashes == 0, text
    assert details["rss_growth_kib_after_warmup"] < MAX_RSS_GROWTH_KIB, text
    assert details["memory"]["fds"]["growth"] == 0, text  # replugging leaks no descriptor
