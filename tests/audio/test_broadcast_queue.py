"""The broadcast queue end to end: real PyAudio into a captured ALSA file PCM, mock GPIO pin.

Each test reads back the exact samples the amplifier would have received and
the receipts the gateway would have sent (docs/protocol.md §7, §9).
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from audio.broadcast import Broadcast
from audio.clips import BadAudio, UnknownClip
from audio.tones import render_tone
from audio.tts import TtsUnavailable
from harness.alsa_capture import alsa_capture
from tests.audio.conftest import RATE, sine


def gap(seconds: float) -> bytes:
    return bytes(2 * round(seconds * RATE))


def broadcast(
    bid: str,
    speech: bytes | None,
    *,
    level: str = "red",
    central: bool = True,
    tone: str = "none",
    repeat: int = 1,
    **kw: object,
) -> Broadcast:
    render = None if speech is None else (lambda: speech)
    return Broadcast(bid, level, central, tone, render, repeat=repeat, **kw)  # type: ignore[arg-type]


def test_tone_then_speech_repeated_with_gaps(make_rig) -> None:
    rig = make_rig(repeat_gap_s=0.25)
    speech = sine(700, 0.3)
    rig.queue.submit(broadcast("a-1", speech, tone="chime", repeat=2))
    extra = rig.recorder.wait_for("a-1", "played")
    rig.wait_idle()
    rig.close()

    chime = render_tone("chime", RATE)
    assert rig.capture.raw() == chime + speech + gap(0.25) + chime + speech
    assert rig.recorder.statuses("a-1") == ["queued", "playing", "played"]
    expected_s = (2 * len(chime + speech) + len(gap(0.25))) / (2 * RATE)
    assert extra["duration_s"] == pytest.approx(expected_s, abs=0.1)


def test_red_preempts_blue_within_200_ms_and_blue_replays(make_rig) -> None:
    rig = make_rig()
    blue, red = sine(300, 2.0), sine(900, 0.4)
    rig.queue.submit(broadcast("blue-1", blue, level="blue"))
    rig.recorder.wait_for("blue-1", "playing")
    time.sleep(0.5)
    submitted = time.monotonic()
    rig.queue.submit(broadcast("red-1", red, level="red"))
    rig.recorder.wait_for("blue-1", "played")
    rig.wait_idle()
    rig.close()

    red_write, red_queued = next((t, q) for t, q in rig.first_writes if t > submitted)
    assert red_write + red_queued - submitted <= 0.2  # when the red is heard, after submit
    raw = rig.capture.raw()
    cut = raw.index(red)
    assert 0 < cut < len(blue) and raw[:cut] == blue[:cut]  # blue was cut short ...
    assert raw[cut:] == red + blue  # ... then red, then blue again from the start
    assert rig.recorder.statuses("blue-1") == [
        "queued",
        "playing",
        "interrupted",
        "playing",
        "played",
    ]
    assert rig.recorder.statuses("red-1") == ["queued", "playing", "played"]


def test_cancel_mid_play_stops_the_sound_within_200_ms(make_rig) -> None:
    rig = make_rig()
    speech = sine(440, 2.0)
    rig.queue.submit(broadcast("a-2", speech))
    rig.recorder.wait_for("a-2", "playing")
    time.sleep(0.4)
    cancelled_at = time.monotonic()
    assert rig.queue.cancel("a-2") is True
    rig.recorder.wait_for("a-2", "cancelled")
    assert rig.player.audible_until() - cancelled_at <= 0.2
    rig.wait_idle()
    rig.close()

    raw = rig.capture.raw()
    assert 0 < len(raw) < len(speech) and raw == speech[: len(raw)]
    assert rig.recorder.statuses("a-2") == ["queued", "playing", "cancelled"]
    assert rig.queue.cancel("a-2") is False


def test_silent_test_alert_reports_played_and_writes_nothing(make_rig, pin_factory) -> None:
    rig = make_rig(amp_pin=27)
    rendered = threading.Event()

    def speech() -> bytes:
        rendered.set()
        return sine(440, 1.0)

    rig.queue.submit(Broadcast("t-1", "red", True, "siren", speech, repeat=3, silent=True))
    extra = rig.recorder.wait_for("t-1", "played")
    rig.close()

    assert extra["silent"] is True
    assert rendered.is_set()  # the whole pipeline ran, TTS included
    assert rig.recorder.statuses("t-1") == ["queued", "playing", "played"]
    assert rig.capture.raw() == b""
    assert [s.state for s in pin_factory.pin(27).states] == [False]  # amplifier never on


def test_missing_device_fails_after_retries_and_reports_a_fault(make_rig, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="audio.broadcast_worker")
    rig = make_rig(device="usb-horn-speaker", retries=2)
    rig.queue.submit(broadcast("a-3", sine(440, 0.2)))
    extra = rig.recorder.wait_for("a-3", "failed")
    rig.close()

    assert extra == {"reason": "audio_device"}
    assert rig.recorder.statuses("a-3") == ["queued", "failed"]
    assert "audio_device" in rig.recorder.faults
    assert rig.recorder.states[-1] == "fault"
    attempts = [r for r in caplog.records if "audio device error on a-3" in r.getMessage()]
    assert len(attempts) == 3  # one try and two retries
    assert rig.capture.raw() == b""


def test_device_breaking_mid_play_fails_then_recovers(tmp_path, make_rig) -> None:
    with alsa_capture(tmp_path / "broken", failing=True):
        rig = make_rig(retries=1)
        rig.queue.submit(broadcast("a-4", sine(440, 1.0)))
        assert rig.recorder.wait_for("a-4", "failed") == {"reason": "audio_device"}
        assert rig.queue.state == "fault"
    # the card is back (each reopen re-reads the ALSA config): the next broadcast plays
    speech = sine(550, 0.3)
    rig.queue.submit(broadcast("a-5", speech))
    rig.recorder.wait_for("a-5", "played")
    rig.wait_idle()
    rig.close()

    assert rig.recorder.statuses("a-4") == ["queued", "playing", "failed"]
    assert "audio_device" in rig.recorder.faults
    assert rig.queue.state == "idle"
    assert rig.capture.raw() == speech


def test_amplifier_on_before_first_sample_and_off_after_release(make_rig, pin_factory) -> None:
    rig = make_rig(amp_pin=27, warmup_s=0.3, release_s=0.4)
    pin = pin_factory.pin(27)
    first_writes: list[tuple[float, bool]] = []
    rig.player.on_first_write = lambda queued: first_writes.append((time.monotonic(), pin.state))
    submitted = time.monotonic()
    rig.queue.submit(broadcast("a-6", sine(440, 0.2)))
    rig.recorder.wait_for("a-6", "played")
    rig.wait_idle()
    sound_ended = time.monotonic()
    assert pin.state is True  # held for release_s after the queue empties
    while pin.state:
        assert time.monotonic() - sound_ended < 2.0, "amplifier never switched off"
        time.sleep(0.01)
    off_after = time.monotonic() - sound_ended
    rig.close()

    [(first_write, amp_on_then)] = first_writes
    assert amp_on_then is True
    assert first_write - submitted >= 0.3  # the warm-up was waited out
    assert 0.3 <= off_after <= 1.0
    assert [s.state for s in pin.states] == [False, True, False]


def test_slow_speech_does_not_delay_the_tone(make_rig) -> None:
    rig = make_rig()
    speech = sine(440, 0.3)

    def slow_tts() -> bytes:
        time.sleep(1.5)
        return speech

    submitted = time.monotonic()
    rig.queue.submit(Broadcast("a-7", "red", True, "chime", slow_tts))
    rig.recorder.wait_for("a-7", "played")
    rig.wait_idle()
    rig.close()

    first_write = rig.first_writes[0][0]
    assert first_write - submitted < 0.1  # the chime started at once, not after 1.5 s
    chime = render_tone("chime", RATE)
    raw = rig.capture.raw()
    assert raw.startswith(chime) and raw.endswith(speech)
    waited = raw[len(chime) : len(raw) - len(speech)]
    # silence while TTS finished: 1.5 s - 1.0 s of chime, plus up to 0.1 s already queued
    assert not any(waited) and 0.45 <= len(waited) / (2 * RATE) <= 0.7


def test_priority_order_level_then_central_then_fifo(make_rig) -> None:
    rig = make_rig()
    rig.queue.submit(broadcast("gate", sine(440, 0.4), level="red"))
    rig.recorder.wait_for("gate", "playing")
    short = sine(440, 0.05)
    for bid, level, central in [
        ("blue-c", "blue", True),
        ("orange-l", "orange", False),
        ("orange-c1", "orange", True),
        ("yellow-c", "yellow", True),
        ("orange-c2", "orange", True),
    ]:
        rig.queue.submit(broadcast(bid, short, level=level, central=central))
    assert [e["id"] for e in rig.queue.snapshot()] == [
        "gate",
        "orange-c1",
        "orange-c2",
        "orange-l",
        "yellow-c",
        "blue-c",
    ]
    rig.recorder.wait_for("blue-c", "played")
    rig.close()

    started = [bid for bid, status, _ in rig.recorder.events if status == "playing"]
    assert started == ["gate", "orange-c1", "orange-c2", "orange-l", "yellow-c", "blue-c"]
    assert "interrupted" not in rig.recorder.statuses("gate")


def test_central_alert_preempts_local_alarm_of_the_same_level(make_rig) -> None:
    rig = make_rig()
    rig.queue.submit(broadcast("local:co:1", sine(300, 2.0), level="orange", central=False))
    rig.recorder.wait_for("local:co:1", "playing")
    rig.queue.submit(broadcast("local:co:2", sine(300, 0.1), level="orange", central=False))
    rig.queue.submit(broadcast("c-1", sine(900, 0.1), level="orange", central=True))
    rig.recorder.wait_for("local:co:2", "played")
    rig.close()

    assert rig.recorder.statuses("local:co:1")[:3] == ["queued", "playing", "interrupted"]
    started = [bid for bid, status, _ in rig.recorder.events if status == "playing"]
    assert started == ["local:co:1", "c-1", "local:co:1", "local:co:2"]


def test_expired_before_start_and_while_preempted(make_rig) -> None:
    now = [1_000_000]
    rig = make_rig(time_ms=lambda: now[0])
    rig.queue.submit(broadcast("old", sine(440, 0.2), expires_ms=999_999))
    rig.queue.submit(broadcast("blue-x", sine(300, 2.0), level="blue", expires_ms=1_500_000))
    rig.recorder.wait_for("blue-x", "playing")
    now[0] = 1_600_000  # blue-x expires while the red plays
    red = sine(900, 0.2)
    rig.queue.submit(broadcast("red-x", red))
    rig.recorder.wait_for("blue-x", "expired")
    rig.wait_idle()
    rig.close()

    assert rig.recorder.statuses("old") == ["queued", "expired"]
    assert rig.recorder.statuses("blue-x") == ["queued", "playing", "interrupted", "expired"]
    assert rig.capture.raw().endswith(red)  # blue-x did not play again


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (UnknownClip("no such clip"), "unknown_clip"),
        (BadAudio("not a WAV"), "bad_audio"),
        (TtsUnavailable("espeak-ng missing"), "tts_unavailable"),
    ],
)
def test_speech_errors_fail_with_their_reason(make_rig, error, reason) -> None:
    rig = make_rig()

    def speech() -> bytes:
        raise error

    rig.queue.submit(Broadcast("a-8", "red", True, "none", speech))
    assert rig.recorder.wait_for("a-8", "failed") == {"reason": reason}
    rig.close()
    assert rig.recorder.statuses("a-8") == ["queued", "failed"]
    assert rig.capture.raw() == b""


def test_tts_failing_during_the_tone_stops_it_and_fails(make_rig) -> None:
    rig = make_rig()

    def speech() -> bytes:
        time.sleep(0.3)
        raise TtsUnavailable("espeak-ng crashed")

    rig.queue.submit(Broadcast("a-9", "yellow", True, "chime", speech, repeat=2))
    assert rig.recorder.wait_for("a-9", "failed") == {"reason": "tts_unavailable"}
    rig.wait_idle()
    rig.close()
    assert rig.recorder.statuses("a-9") == ["queued", "playing", "failed"]
    chime, raw = render_tone("chime", RATE), rig.capture.raw()
    assert 0 < len(raw) <= 2 * RATE * 0.5 and raw == chime[: len(raw)]  # cut within 200 ms


def test_failing_status_callback_does_not_stop_the_worker(make_rig) -> None:
    calls: list[tuple[str, str]] = []

    def explode(bid: str, status: str, extra: dict[str, object]) -> None:
        calls.append((bid, status))
        raise RuntimeError("receipt store is broken")

    rig = make_rig(on_status=explode)
    rig.queue.submit(broadcast("a-10", sine(440, 0.1)))
    rig.queue.submit(broadcast("a-11", sine(550, 0.1)))
    deadline = time.monotonic() + 5
    while ("a-11", "played") not in calls:
        assert time.monotonic() < deadline, calls
        time.sleep(0.01)
    rig.close()
    assert calls.count(("a-10", "played")) == 1


def test_snapshot_and_cancel_all(make_rig) -> None:
    rig = make_rig()
    long = sine(440, 2.0)
    rig.queue.submit(broadcast("p-1", long))
    rig.recorder.wait_for("p-1", "playing")
    rig.queue.submit(broadcast("q-1", long, level="blue"))
    rig.queue.submit(broadcast("q-2", long, level="yellow"))
    snapshot = rig.queue.snapshot()
    assert [(e["id"], e["state"]) for e in snapshot] == [
        ("p-1", "playing"),
        ("q-2", "queued"),
        ("q-1", "queued"),
    ]
    assert rig.queue.state == "playing"
    stopped_at = time.monotonic()
    assert sorted(rig.queue.cancel_all()) == ["p-1", "q-1", "q-2"]
    rig.recorder.wait_for("p-1", "cancelled")
    assert rig.player.audible_until() - stopped_at <= 0.2
    rig.wait_idle()
    rig.close()
    for bid in ("q-1", "q-2"):
        assert rig.recorder.statuses(bid) == ["queued", "cancelled"]
    assert rig.queue.snapshot() == []
    assert len(rig.capture.raw()) < len(long)
