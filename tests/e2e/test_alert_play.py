"""A signed JSON alert and a signed CAP alert for the station's town reach the loudspeakers.

The centre's view (receipts `received` → `queued` → `playing` → `played`, seq
increasing, with `duration_s`) and the villagers' view (the capture holds the
tone and the speech exactly, `repeat` times, with the repeat gap between) of
docs/protocol.md §6.1, §6.2 and §7, through `cunxiang run`.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Iterator

import pytest

from audio.clips import decode_wav
from audio.tones import render_tone
from audio.tts import Tts
from gateway.downlink.alert_model import InlineAudio
from harness.alsa_capture import read_samples, sound_runs
from harness.sounds import RATE, occurrences, sine_pcm, wav_bytes
from tests.e2e.conftest import BEEP, Mark, Rig, running_station

GAP_S = 0.2  # write_config's repeat_gap_s
GAP_BYTES = 2 * round(GAP_S * RATE)
PLAYED = ["received", "queued", "playing", "played"]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    folder = tmp_path_factory.mktemp("play")
    audio = "default_repeat = { red = 3, orange = 3, yellow = 2, blue = 2 }"
    with running_station(folder, audio=audio) as station:
        yield station


def assert_played_in_order(rig: Rig, alert_id: str, since: Mark) -> dict[str, object]:
    """Receipts received → queued → playing → played, in seq order; returns `played`."""
    played = rig.wait_status(alert_id, "played", timeout=20)
    receipts = rig.receipts(alert_id, since)
    assert [r["status"] for r in receipts] == PLAYED
    seqs = [r["seq"] for r in receipts]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert all(isinstance(r["ts"], int) for r in receipts)
    return played


def assert_repeated(audio: bytes, message: bytes, repeat: int) -> None:
    """`message` is heard exactly `repeat` times, back to back with the repeat gap between."""
    found = occurrences(audio, message)
    assert len(found) == repeat, f"message heard {len(found)} times, expected {repeat}"
    for earlier, later in itertools.pairwise(found):
        assert later - earlier == len(message) + GAP_BYTES
        assert not any(audio[earlier + len(message) : later])
    runs = sound_runs(read_samples(audio), RATE, min_gap_s=0.1)
    assert len(runs) == repeat, runs


def test_json_alert_plays_tone_and_clip_repeat_times(rig: Rig) -> None:
    mark = rig.mark()
    alert = rig.alert(tone="chime", clip=BEEP, repeat=2, level="yellow")
    rig.send(alert)
    played = assert_played_in_order(rig, alert.id, mark)
    rig.settle()

    message = render_tone("chime", RATE) + sine_pcm(1000, 0.15)
    expected_s = (2 * len(message) + GAP_BYTES) / (2 * RATE)
    assert played["duration_s"] == pytest.approx(expected_s, abs=0.05)
    assert_repeated(rig.audio_since(mark), message, 2)


def test_json_alert_speaks_its_text_through_tts(rig: Rig) -> None:
    text = "注意撤离"
    mark = rig.mark()
    alert = rig.alert(tone="none", clip=None, text=text, repeat=2, level="orange")
    rig.send(alert)
    assert_played_in_order(rig, alert.id, mark)
    rig.settle()

    # What espeak-ng rendered for the station, from its own cache, is what was heard, twice.
    station_tts = Tts(rig.folder / "tts-cache", rate=RATE)
    speech = decode_wav(station_tts.cache_path(text).read_bytes(), RATE)
    assert len(speech) > RATE // 2  # a quarter of a second of speech at least
    assert len(occurrences(rig.audio_since(mark), speech)) == 2


def test_cap_alert_plays_the_station_defaults_for_its_level(rig: Rig) -> None:
    """CAP has no tone or repeat: severity Minor is blue, whose defaults are chime and 2."""
    voice = sine_pcm(700, 0.2, amplitude=0.4)
    mark = rig.mark()
    alert = rig.alert(
        clip=None,
        tone=None,
        repeat=None,
        level="blue",
        text="",
        audio=InlineAudio(data=wav_bytes(voice)),
    )
    raw = rig.send(alert, cap=True)
    assert b"<alert" in base64.b64decode(json.loads(raw)["payload"])
    played = assert_played_in_order(rig, alert.id, mark)
    rig.settle()

    message = render_tone("chime", RATE) + voice
    assert played["duration_s"] == pytest.approx(
        (2 * len(message) + GAP_BYTES) / (2 * RATE), abs=0.05
    )
    assert_repeated(rig.audio_since(mark), message, 2)


def test_an_exercise_plays_like_an_actual_alert(rig: Rig) -> None:
    mark = rig.mark()
    alert = rig.alert(status="exercise", repeat=1)
    rig.send(alert)
    assert_played_in_order(rig, alert.id, mark)
    rig.settle()
    assert len(occurrences(rig.audio_since(mark), sine_pcm(1000, 0.15))) == 1


def test_an_alert_id_that_looks_like_a_speaker_test_still_gets_its_receipts(rig: Rig) -> None:
    """Ids are any printable text (§6.1): one the station uses internally must not swallow receipts."""
    mark = rig.mark()
    alert = rig.alert(id=f"speaker-test:{time.time_ns()}", repeat=1)
    rig.send(alert)
    assert_played_in_order(rig, alert.id, mark)
    rig.settle()
    assert len(occurrences(rig.audio_since(mark), sine_pcm(1000, 0.15))) == 1
