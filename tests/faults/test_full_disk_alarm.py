"""A local alarm sounds on a full disk, every time, in every full-disk episode (issue 12).

The bug this guards against: the alarm event could not be committed, `add_event` returned
0 for it, the broadcast became ``local:<rule>:0``, and the next alarm of that rule on a full
disk — in the same episode or any later one — was taken for a repeat of it and dropped in
silence. The database sits on a small tmpfs filled by a ballast file (harness/tmpfs.py);
a JSON-lines node on a pty drives the rule; the loudspeaker is an ALSA file capture.
"""

from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path

import pytest

from harness.faults.common import wait_for
from harness.faults.station import FaultStation, edit_config
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.serial_ports import PtyPort
from harness.sounds import RATE, write_clip
from harness.station import Centre, write_config
from harness.tmpfs import SmallDisk


def chirp_pcm(seconds: float, rate: int = RATE) -> bytes:
    """A rising sweep: unlike a steady sine, it matches the capture at one offset only."""
    frames = (
        struct.pack("<h", int(9000 * math.sin(2 * math.pi * (400 * t + 900 * t * t))))
        for t in (i / rate for i in range(int(seconds * rate)))
    )
    return b"".join(frames)


SIREN = chirp_pcm(0.4)
BODY = """
[[sensors]]
name = "river"
type = "jsonl"
port = "{port}"
timeout_s = 30

[[rules]]
name = "river-high"
sensor = "river"
quantity = "water_level_m"
above = 3.0
clear_below = 2.5
level = "red"
broadcast = {{ clip = "siren", repeat = 1 }}
"""


def heard(station: FaultStation) -> int:
    """How many times the rule's clip reached the loudspeaker (all starts of the station)."""
    return sum(capture.raw().count(SIREN) for capture in station.captures)


def level(port: PtyPort, value: float) -> None:
    port.write(json.dumps({"q": "water_level_m", "v": value}).encode() + b"\n")


def alarm(port: PtyPort, station: FaultStation, times_heard: int) -> None:
    """Raise the river past the threshold, wait for the siren, lower it again."""
    level(port, 4.2)
    assert wait_for(lambda: heard(station) >= times_heard, 20), (
        f"alarm {times_heard} was not heard (heard {heard(station)} times)\n"
        + station.log()[-3000:]
    )
    level(port, 1.0)
    time.sleep(0.5)


def test_the_local_alarm_sounds_in_two_separate_full_disk_episodes(tmp_path: Path) -> None:
    reason = SmallDisk.available(tmp_path)
    if reason is not None:
        pytest.skip(f"cannot mount a small tmpfs: {reason}")
    with SmallDisk(tmp_path / "disk", 4096) as disk, Mosquitto() as broker:
        port = PtyPort(tmp_path / "ttyRIVER")
        config = write_config(tmp_path, broker.port, Centre(), body=BODY.format(port=port.path))
        edit_config(config, {'path = "station.db"': 'path = "disk/station.db"'})
        write_clip(tmp_path / "clips", "siren", SIREN)
        ledger = Ledger(port=broker.port)
        station = FaultStation(config)
        try:
            station.start()
            station.wait_ready()
            level(port, 1.0)
            for episode in (1, 2):
                disk.fill()
                level(port, 1.0)  # a reading to commit: the store finds the disk full
                assert wait_for(lambda n=episode: station.log().count("cannot write") >= n, 20)
                # Two alarms of the same rule in each episode, all held in memory.
                alarm(port, station, 2 * episode - 1)
                alarm(port, station, 2 * episode)
                assert station.running()
                disk.empty()
                level(port, 1.0)
                assert wait_for(
                    lambda n=episode: station.log().count("writing works again") >= n, 20
                )
            alarms = ledger.wait(
                lambda: len(ledger.events_of("alarm")) >= 4 and ledger.events_of("alarm"),
                30,
                "the four alarm events at the centre",
            )
            ids = [event["broadcast"] for event in alarms]
            assert len(set(ids)) == 4, ids
            for broadcast_id in ids:
                ledger.wait(
                    lambda b=broadcast_id: "played" in ledger.statuses(b),
                    30,
                    f"the played receipt of {broadcast_id}",
                )
            assert heard(station) == 4
        finally:
            station.close()
            ledger.close()
            port.close()
