"""What the broker can throw at the station's link: a message far over the size limit.

The station runs as `cunxiang run` against a private Mosquitto. A 40 MiB message on
`P/alert/all` must not cost it memory (peak RSS, VmHWM, grows < 30 MB) nor its voice (a later
signed alert still plays, a command is still answered). Under MQTT 5 the broker never
delivers it (the Maximum Packet Size in CONNECT, docs/protocol.md §2); under MQTT 3.1.1 the
station reads it in small chunks, throws it away, acknowledges it and reports `too_large`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.uplink.settings import max_packet_bytes
from harness.station import topic, wait_until
from tests.e2e.conftest import Rig, running_station

ALL_TOPIC = topic("alert", "all")
GIANT_BYTES = 40 * 1024 * 1024
MAX_PAYLOAD = 65536  # running_station's security.max_payload_bytes
RSS_GROWTH_LIMIT_KIB = 30 * 1024


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the most resident memory the process has ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def still_answers(rig: Rig) -> None:
    """A small signed alert plays and a command is answered after the giant."""
    alert = rig.alert()
    rig.send(alert, topic_=ALL_TOPIC)
    rig.wait_status(alert.id, "played", timeout=20)
    assert rig.command("status", timeout=10)["ok"]


def send_giant(rig: Rig) -> str:
    """Publish the 40 MiB message (the broker has it once this returns); its SHA-256."""
    giant = b"{" + b"x" * (GIANT_BYTES - 2) + b"}"
    info = rig.sub.client.publish(ALL_TOPIC, giant, qos=1)
    info.wait_for_publish(60)
    return hashlib.sha256(giant).hexdigest()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_40_mib_message_costs_no_memory_and_the_station_keeps_answering(
    tmp_path: Path, protocol: str
) -> None:
    with running_station(tmp_path, mqtt=f'protocol = "{protocol}"') as rig:
        pid = rig.station.pid
        rig.barrier()
        before = peak_rss_kib(pid)
        mark = rig.mark()
        digest = send_giant(rig)
        if protocol == "3.1.1":
            # Nothing bounds what a 3.1.1 broker sends: the station reads and drops it.
            event = wait_until(
                lambda: next(iter(rig.events("downlink_rejected", mark)), None),
                60,
                "a downlink_rejected event for the giant",
            )
            assert event["reason"] == "too_large", event
            assert event["payload_sha256"] == digest, event
            assert event["topic"] == ALL_TOPIC, event
        still_answers(rig)
        growth = peak_rss_kib(pid) - before
        print(f"MQTT {protocol}: VmHWM {before} KiB before, grew {growth} KiB")
        assert growth < RSS_GROWTH_LIMIT_KIB, f"peak RSS grew {growth} KiB"
        if protocol == "5":
            assert not rig.events("downlink_rejected", mark), "the broker delivered it anyway"
        log = rig.log()
        assert f"over MQTT {protocol}" in log
        # Not delivered again after a reconnect: it was acknowledged (3.1.1) or never sent.
        rig.broker.restart()
        wait_until(rig.sub.client.is_connected, 20, "the centre to reconnect")
        wait_until(lambda: rig.log().count("over MQTT") >= 2, 20, "the station to reconnect")
        rig.barrier()
        rejected = rig.events("downlink_rejected", mark)
        assert len(rejected) == (1 if protocol == "3.1.1" else 0), rejected
        assert peak_rss_kib(pid) - before < RSS_GROWTH_LIMIT_KIB


def test_the_packet_limit_is_the_largest_envelope_plus_64_kib() -> None:
    # The envelope carries the payload in base64: a payload of max_payload_bytes must fit.
    from gateway.downlink.envelope import max_raw_size

    assert max_packet_bytes(MAX_PAYLOAD) == max_raw_size(MAX_PAYLOAD) + 65536
    assert max_packet_bytes(16 * 1024 * 1024) < GIANT_BYTES


def test_mqtt5_is_the_default_with_a_persistent_session(tmp_path: Path) -> None:
    with running_station(tmp_path) as rig:
        rig.barrier()
        log = rig.broker.log_path.read_text(errors="replace")
        line = next(
            (row for row in log.splitlines() if "New client connected" in row and "cx-" in row),
            "",
        )
        assert "(p5, c0," in line, line  # MQTT 5, clean start off
