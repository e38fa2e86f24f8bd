"""Schedules at boot, the village's own items, and an unsynced clock (docs/protocol.md §10).

Each test runs its own station: one started after the centre published (retained), one
with a `[[programmes]]` item in its config file, one whose clock is not synced.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.alsa_capture import write_alsa_config
from harness.mosquitto import Mosquitto
from harness.sounds import occurrences, sine_pcm, write_clip
from harness.station import ROOT, Centre, wait_until, write_config
from tests.e2e.conftest import STATE_TOPIC, Rig, running_station
from tests.programmes.helpers import item, item_id, local_in, publish_schedule, schedule

NOTICE = sine_pcm(660, 0.5, amplitude=0.3)
LOCAL = sine_pcm(880, 0.5, amplitude=0.3)


def test_a_retained_schedule_reaches_a_station_started_afterwards(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        centre = Centre()
        write_config(tmp_path, broker.port, centre, security="max_payload_bytes = 65536")
        write_clip(tmp_path / "clips", "notice", NOTICE)
        rig = Rig(tmp_path, broker, centre, write_alsa_config(tmp_path / "alsa"))
        try:
            when = local_in(25)
            body = schedule("sched-boot", 3, [item("boot", when, clip="notice", tone="none")])
            publish_schedule(rig, body)  # before the station exists: only the broker holds it
            rig.start()
            accepted = rig.wait_status("prog:sched-boot", "received", timeout=15)
            assert accepted["version"] == 3
            broadcast = item_id("sched-boot", "boot", when)
            rig.wait_status(broadcast, "played", timeout=40)
            rig.settle()
            assert occurrences(rig.capture.raw(), NOTICE)

            # Kept in the database: after a restart the same retained copy is not news.
            assert rig.station.terminate() == 0
            mark = rig.mark()
            rig.start()
            rig.barrier()
            assert not rig.receipts("prog:sched-boot", mark)
            assert rig.statuses(broadcast, mark) == [], "a played item played again"
            listing = subprocess.run(
                [sys.executable, "-m", "gateway", "programmes", "-c", str(rig.config)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            assert "sched-boot v3" in listing and "boot" in listing
        finally:
            rig.close()


def test_a_local_config_item_plays(tmp_path: Path) -> None:
    when = local_in(20)
    body = f"""
[[programmes]]
name = "village-notice"
at = "{when:%H:%M:%S}"
days = "daily"
clip = "local"
tone = "none"
"""
    with running_station(tmp_path, body=body, clips={"local": LOCAL}) as rig:
        wait_until(
            lambda: any(
                (s.get("next_programme") or {}).get("item") == "village-notice"
                for s in rig.on(STATE_TOPIC)
            ),
            10,
            "the local item as next_programme in the state",
        )
        broadcast = item_id("local", "village-notice", when)
        rig.wait_status(broadcast, "played", timeout=40)
        assert rig.statuses(broadcast) == ["queued", "playing", "played"]
        rig.settle()
        assert occurrences(rig.capture.raw(), LOCAL)
        status = subprocess.run(
            [sys.executable, "-m", "gateway", "status", "-c", str(rig.config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "Programme: " in status


def test_with_the_clock_unsynced_nothing_routine_plays(tmp_path: Path) -> None:
    with running_station(tmp_path, clock="unsynced") as rig:
        state = wait_until(
            lambda: [s for s in rig.on(STATE_TOPIC) if s.get("online")], 10, "a state"
        )[-1]
        assert state["clock_synced"] is False and state["programme_state"] == "clock_unsynced"
        mark = rig.mark()
        when = local_in(4)
        publish_schedule(rig, schedule("sched-unsynced", 1, [item("x", when, clip="beep")]))
        broadcast = item_id("sched-unsynced", "x", when)
        skipped = rig.wait_status(broadcast, "skipped", timeout=20)
        assert skipped["reason"] == "clock_unsynced"
        assert rig.statuses(broadcast, mark) == ["skipped"]
        assert rig.silent_since(mark)
        status = subprocess.run(
            [sys.executable, "-m", "gateway", "status", "-c", str(rig.config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "NOT PLAYING: the clock is not synced" in status
