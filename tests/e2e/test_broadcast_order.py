"""Preemption, cancellation and updates through the running station (docs/protocol.md §6.1, §7, §9).

The clips are distinct tones, so the capture shows which message was heard
when: a long quiet `blue` clip, a short loud `red` one and an `update` clip;
what a cancel says is espeak-ng speech, read back from the station's TTS cache.
How long the blue clip kept sounding after the red alert (or the cancel) arrived
is read from the capture (the player paces by the clock, so samples are time)
against the station's own receipt timestamps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from audio.clips import decode_wav
from audio.tts import Tts
from harness.sounds import RATE, occurrences, sine_pcm
from tests.e2e.conftest import RECEIPT_TOPIC, Rig, running_station

BLUE = sine_pcm(440, 2.0, amplitude=0.2)
RED = sine_pcm(1500, 0.3, amplitude=0.6)
UPDATE = sine_pcm(900, 0.3, amplitude=0.5)
#: Sound that may still come after a preempting alert arrives (docs/protocol.md §9).
PREEMPT_LIMIT_S = 0.2
CHUNK = 2 * round(0.02 * RATE)  # the player's 20 ms chunk, in bytes


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    clips = {"blue": BLUE, "red": RED, "update": UPDATE}
    with running_station(tmp_path_factory.mktemp("order"), clips=clips) as station:
        yield station


def heard_after(
    audio: bytes, first: bytes, second: bytes, arrival_ms: int, started_ms: int
) -> float:
    """Seconds of `first` heard after `second`'s message arrived at the station.

    `first` began sounding at its `playing` receipt (`started_ms`; the receipt is
    written just before the first chunk, so this errs towards a larger result) and
    its samples ran in real time until it was stopped; the capture holds only what
    was written, so whatever comes before `second` is how long `first` sounded.
    """
    start = audio.find(first[:CHUNK])
    end = occurrences(audio, second)[0]
    assert 0 <= start < end
    sounded_s = (end - start) / (2 * RATE)
    return sounded_s - (arrival_ms - started_ms) / 1000


def test_red_preempts_blue_within_200_ms_and_blue_plays_again(rig: Rig) -> None:
    mark = rig.mark()
    blue = rig.alert(clip="blue", level="blue", repeat=1)
    rig.send(blue)
    blue_playing = rig.wait_status(blue.id, "playing")
    time.sleep(0.5)
    red = rig.alert(clip="red", level="red", repeat=1)
    rig.send(red)
    rig.wait_status(blue.id, "played", timeout=15)
    rig.settle()

    assert rig.statuses(red.id, mark) == ["received", "queued", "playing", "played"]
    assert rig.statuses(blue.id, mark) == [
        "received", "queued", "playing", "interrupted", "playing", "played",
    ]  # fmt: skip
    order = [(r["alert"], r["status"]) for r in rig.on(RECEIPT_TOPIC, mark)]
    assert order.index((blue.id, "interrupted")) < order.index((red.id, "playing"))
    assert order.index((red.id, "played")) < order.index((blue.id, "playing"), 3)

    audio = rig.audio_since(mark)
    # Heard: the start of blue, all of red, then blue again from its start, all of it.
    assert len(occurrences(audio, RED)) == 1
    replays = occurrences(audio, BLUE)
    assert len(replays) == 1 and replays[0] > occurrences(audio, RED)[0]
    assert audio.find(BLUE[:CHUNK]) < occurrences(audio, RED)[0]
    red_received = rig.receipts(red.id)[0]["ts"]
    overrun = heard_after(audio, BLUE, RED, red_received, blue_playing["ts"])
    assert overrun <= PREEMPT_LIMIT_S, f"blue sounded {overrun:.3f} s after red arrived"


def test_cancel_mid_play_stops_the_sound_and_says_the_cancel(rig: Rig) -> None:
    mark = rig.mark()
    original = rig.alert(clip="blue", level="orange", repeat=1)
    rig.send(original)
    original_playing = rig.wait_status(original.id, "playing")
    time.sleep(0.5)
    text = "警报解除"
    cancel = rig.alert(
        msg_type="cancel", references=[original.id], clip=None, text=text, level="blue", repeat=1
    )
    rig.send(cancel)
    rig.wait_status(cancel.id, "playing")
    # Said at the level of the alert it withdraws (§6.1), not at its own.
    assert [(q["id"], q["level"]) for q in rig.barrier()["queue"]] == [(cancel.id, "orange")]
    rig.wait_status(cancel.id, "played")
    rig.settle()

    assert rig.statuses(original.id, mark) == ["received", "queued", "playing", "cancelled"]
    assert rig.receipts(original.id)[-1]["by"] == cancel.id
    assert rig.statuses(cancel.id, mark) == ["received", "queued", "playing", "played"]

    audio = rig.audio_since(mark)
    speech = decode_wav(
        Tts(rig.folder / "tts-cache", rate=RATE).cache_path(text).read_bytes(), RATE
    )
    assert occurrences(audio, BLUE) == []  # never heard to the end, never again
    assert len(occurrences(audio, speech)) == 1  # the cancel's own text, once
    arrival = rig.receipts(cancel.id)[0]["ts"]
    overrun = heard_after(audio, BLUE, speech, arrival, original_playing["ts"])
    assert overrun <= PREEMPT_LIMIT_S, f"the cancelled alert sounded {overrun:.3f} s on"
    time.sleep(0.5)
    assert rig.statuses(original.id, mark)[-1] == "cancelled"


def test_update_supersedes_the_alert_it_references(rig: Rig) -> None:
    mark = rig.mark()
    original = rig.alert(clip="blue", level="yellow", repeat=1)
    rig.send(original)
    rig.wait_status(original.id, "playing")
    time.sleep(0.3)
    update = rig.alert(
        msg_type="update", references=[original.id], clip="update", level="yellow", repeat=1
    )
    rig.send(update)
    rig.wait_status(update.id, "played")
    rig.settle()

    assert rig.statuses(original.id, mark) == ["received", "queued", "playing", "superseded"]
    assert rig.receipts(original.id)[-1]["by"] == update.id
    assert rig.statuses(update.id, mark) == ["received", "queued", "playing", "played"]
    audio = rig.audio_since(mark)
    assert occurrences(audio, BLUE) == []
    assert len(occurrences(audio, UPDATE)) == 1


def test_cancel_of_a_queued_alert_drops_it_before_it_plays(rig: Rig) -> None:
    mark = rig.mark()
    playing = rig.alert(clip="red", level="red", repeat=2)
    queued = rig.alert(clip="blue", level="blue", repeat=1)
    rig.send(playing)
    rig.send(queued)
    rig.wait_status(queued.id, "queued")
    cancel = rig.alert(msg_type="cancel", references=[queued.id], clip=None, text="", level="blue")
    rig.send(cancel)
    rig.wait_status(playing.id, "played")
    rig.barrier()
    rig.settle()

    assert rig.statuses(queued.id, mark) == ["received", "queued", "cancelled"]
    # A cancel with nothing to say is logged and acknowledged, not broadcast.
    assert rig.statuses(cancel.id, mark) == ["received"]
    audio = rig.audio_since(mark)
    assert len(occurrences(audio, RED)) == 2
    assert audio.find(BLUE[:CHUNK]) == -1
