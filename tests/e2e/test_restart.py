"""A station killed mid-broadcast replays the unexpired alert from the start (docs/protocol.md §9).

`cunxiang run` is SIGKILLed while an alert plays — no chance to save anything
it had not committed — and started again on the same database. The loudspeaker
capture of the second run must hold the whole alert, from its first sample; an
alert that expired while the station was down is reported `expired` and not
played; and the first alert, delivered again, is still known: no receipt, no sound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.alsa_capture import write_alsa_config
from harness.sounds import RATE, occurrences, sine_pcm
from tests.e2e.conftest import TOWN_TOPIC, Rig, running_station

LONG = sine_pcm(500, 2.0, amplitude=0.3)
SHORT = sine_pcm(1200, 0.2, amplitude=0.3)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with running_station(tmp_path / "station", clips={"long": LONG, "short": SHORT}) as station:
        yield station


def test_killed_mid_broadcast_replays_the_unexpired_alert_from_the_start(
    rig: Rig, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    playing = rig.alert(clip="long", level="orange", repeat=1)
    raw = rig.send(playing)
    waiting = rig.alert(clip="short", level="orange", repeat=1, expires=now + timedelta(seconds=2))
    rig.send(waiting)
    rig.wait_status(waiting.id, "queued")
    rig.wait_status(playing.id, "playing")
    time.sleep(0.5)
    rig.station.kill()
    first_run = rig.capture.raw()
    assert any(first_run) and occurrences(first_run, LONG) == []  # cut off mid-play

    while datetime.now(UTC) <= waiting.expires:
        time.sleep(0.1)
    mark = rig.mark()
    rig.start(capture=write_alsa_config(tmp_path / "alsa-2"))
    rig.wait_status(playing.id, "played", timeout=15)
    rig.wait_status(waiting.id, "expired")
    rig.settle()

    assert rig.statuses(playing.id, mark) == ["queued", "playing", "played"]
    assert rig.statuses(waiting.id, mark) == ["expired"]
    before = [r["seq"] for r in rig.receipts(playing.id) if r not in rig.receipts(playing.id, mark)]
    after = [r["seq"] for r in rig.receipts(playing.id, mark)]
    assert max(before) < min(after)  # seq goes on across the crash, never reused
    second_run = rig.capture.raw()
    assert len(occurrences(second_run, LONG)) == 1  # the whole alert, from its first sample
    assert second_run.find(LONG[: 2 * RATE // 50]) == occurrences(second_run, LONG)[0]
    assert occurrences(second_run, SHORT) == []

    # The alert log survives the crash: the same message again is a replay.
    replay = rig.mark()
    rig.publish(TOWN_TOPIC, raw)
    rig.barrier()
    rig.settle()
    assert rig.receipts(playing.id, replay) == []
    assert rig.silent_since(replay)
