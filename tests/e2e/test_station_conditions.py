"""Alerts through `cunxiang run` when things are not as they should be (docs/protocol.md §6.1, §7).

- The station clock is not synced (`station.clock = "unsynced"`): an alert whose
  `sent` is ahead of the station's clock still plays — better a warning than
  none when the clock may be behind — and every receipt of the alert carries
  `"clock_unsynced": true`. (Expiry is still checked, against the time floor:
  tests/e2e/test_trust.py.)
- The audio device breaks mid-play (the ALSA output writes to /dev/full): the
  alert is tried `audio.retries` more times, then gets `failed` with
  `audio_device`, and the centre gets a `broadcast_fault` event and `audio:
  "fault"` in the station state.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness.alsa_capture import write_alsa_config
from harness.mosquitto import Message
from harness.sounds import occurrences, sine_pcm
from harness.station import wait_until
from tests.e2e.conftest import STATE_TOPIC, Rig, running_station

PLAYED = ["received", "queued", "playing", "played"]


def test_unsynced_clock_plays_an_alert_from_its_future_and_says_so(tmp_path: Path) -> None:
    with running_station(tmp_path, clock="unsynced") as rig:
        now = datetime.now(UTC)
        mark = rig.mark()
        # Revision 2 (§6.1): unsynced, expiry is checked against the time floor, but
        # `from_future` is not: this alert is an hour ahead of the station's clock.
        ahead = rig.alert(repeat=1, sent=now + timedelta(hours=1), expires=now + timedelta(hours=2))
        rig.send(ahead)
        rig.wait_status(ahead.id, "played")
        rig.settle()
        receipts = rig.receipts(ahead.id, mark)
        assert [r["status"] for r in receipts] == PLAYED
        assert all(r.get("clock_unsynced") is True for r in receipts), receipts
        assert len(occurrences(rig.audio_since(mark), sine_pcm(1000, 0.15))) == 1
        # (No `status` barrier: the accepted `sent` raised the time floor an hour ahead,
        # and an unsynced station runs no command sent before its floor, §8.)
        assert rig.on(STATE_TOPIC)[-1]["clock_synced"] is False


def test_device_breaking_mid_play_fails_the_alert_and_reports_a_fault(tmp_path: Path) -> None:
    long = {"long": sine_pcm(500, 1.0)}
    with running_station(tmp_path, audio="retries = 1", clips=long) as rig:
        rig.station.terminate()
        rig.start(capture=write_alsa_config(tmp_path / "broken", failing=True))
        mark = rig.mark()
        alert = rig.alert(clip="long", repeat=1)
        rig.send(alert)
        failed = rig.wait_status(alert.id, "failed", timeout=15)
        assert failed["reason"] == "audio_device"
        statuses = rig.statuses(alert.id, mark)
        assert statuses[:3] == ["received", "queued", "playing"] and statuses[-1] == "failed"
        assert "played" not in statuses
        faults = wait_until(lambda: rig.events("broadcast_fault", mark), 5, "broadcast_fault")
        assert faults[0]["reason"] == "audio_device"
        wait_until(
            lambda: any(json.loads(m.payload).get("audio") == "fault" for m in _states(rig)),
            5,
            'state with audio "fault"',
        )
        assert rig.barrier()["audio"] == "fault"


def _states(rig: Rig) -> list[Message]:
    return [m for m in rig.sub.messages[:] if m.topic == STATE_TOPIC]
