"""The Player against real PyAudio writing into a captured ALSA file PCM."""

from __future__ import annotations

import threading
import time

import pyaudio
import pytest

from audio.pcm import audioop
from audio.player import AudioDeviceError, Player
from harness.alsa_capture import alsa_capture
from tests.audio.conftest import RATE, pitch, sine


def test_play_writes_the_exact_samples(capture) -> None:
    player = Player(rate=RATE)
    pcm = sine(440, 0.25)
    # odd-sized pieces: the player re-chunks them without losing a byte
    pieces = [pcm[:1001], pcm[1001:5000], pcm[5000:]]
    assert player.play(pieces, threading.Event()) is True
    player.close()
    assert capture.raw() == pcm


def test_volume_scales_the_samples(capture) -> None:
    player = Player(rate=RATE, volume=0.5)
    pcm = sine(440, 0.1, amplitude=0.9)
    player.play([pcm], threading.Event())
    player.play([pcm], threading.Event(), volume=0.25)
    player.close()
    assert capture.raw() == audioop.mul(pcm, 2, 0.5) + audioop.mul(pcm, 2, 0.25)


def test_a_non_pacing_sink_still_plays_in_real_time(capture) -> None:
    player = Player(rate=RATE)
    player.open()
    started = time.monotonic()
    player.play([sine(440, 0.6)], threading.Event())
    assert player.silence(0.3, threading.Event()) is True
    elapsed = time.monotonic() - started
    player.close()
    # 0.9 s of audio: written no faster than real time minus the 100 ms lead
    assert 0.78 <= elapsed <= 1.5
    assert len(capture.raw()) == 2 * round(0.9 * RATE)


def test_abort_stops_within_200_ms_and_returns_false(capture) -> None:
    player = Player(rate=RATE)
    player.open()
    abort = threading.Event()
    pcm = sine(440, 3.0)
    timer = threading.Timer(0.5, abort.set)
    timer.start()
    played = player.play([pcm], abort)
    aborted_at = time.monotonic()
    timer.join()
    assert played is False
    assert player.audible_until() - aborted_at <= 0.2
    player.close()
    raw = capture.raw()
    assert raw == pcm[: len(raw)]
    assert 0.45 <= len(raw) / (2 * RATE) <= 1.0


def test_drain_waits_until_the_last_sample_is_heard(capture) -> None:
    player = Player(rate=RATE)
    player.play([sine(440, 0.3)], threading.Event())
    assert 0.0 < player.queued_s() <= 0.12
    player.drain()
    assert player.queued_s() == 0.0
    assert time.monotonic() >= player.audible_until()
    player.close()


def test_on_first_write_reports_what_is_still_queued(capture) -> None:
    calls: list[float] = []
    player = Player(rate=RATE, on_first_write=calls.append)
    player.open()
    player.play([sine(440, 0.3)], threading.Event())
    player.play([sine(440, 0.1)], threading.Event())  # right behind the first
    player.close()
    assert len(calls) == 2
    assert calls[0] == 0.0
    assert 0.0 < calls[1] <= 0.12  # the ~100 ms lead of the first play


def test_device_by_name_substring_and_by_index(tmp_path) -> None:
    with alsa_capture(tmp_path, devices={"loudspeaker": "Village loudspeaker"}) as cap:
        pcm = sine(440, 0.05)
        by_name = Player("LOUD", rate=RATE)
        by_name.play([pcm], threading.Event())
        by_name.close()
        assert cap.raw("loudspeaker") == pcm and cap.raw() == b""

        by_default = Player("default", rate=RATE)
        by_default.play([pcm], threading.Event())
        by_default.close()
        assert cap.raw() == pcm


@pytest.mark.parametrize("device", ["usb-horn", 42])
def test_unknown_device_is_an_audio_device_error(capture, device) -> None:
    with pytest.raises(AudioDeviceError, match="no output device"):
        Player(device, rate=RATE).open()


def test_no_output_device_at_all(tmp_path) -> None:
    with alsa_capture(tmp_path, no_device=True):
        player = Player(rate=RATE)
        with pytest.raises(AudioDeviceError):
            player.play([sine(440, 0.05)], threading.Event())
        assert not player.is_open


def test_write_error_closes_and_the_next_play_reopens(tmp_path) -> None:
    with alsa_capture(tmp_path / "broken", failing=True):
        player = Player(rate=RATE)
        with pytest.raises(AudioDeviceError, match="writing to audio device"):
            player.play([sine(440, 1.0)], threading.Event())
        assert not player.is_open
    with alsa_capture(tmp_path / "fixed") as cap:
        pcm = sine(440, 0.1)
        assert player.play([pcm], threading.Event()) is True
        player.close()
        assert cap.raw() == pcm


def test_standby_then_play_again(capture) -> None:
    player = Player(rate=RATE)
    first, second = sine(440, 0.1), sine(660, 0.1)
    player.play([first], threading.Event())
    player.standby()
    player.play([second], threading.Event())
    player.close()
    player.close()  # twice is harmless
    assert capture.raw() == first + second


def _refusing(original, refuse):
    """Wrap PyAudio.open to refuse some formats, like a hw: device that takes only its own."""

    def open_stream(self, *args, **kwargs):
        if refuse(kwargs["rate"], kwargs["channels"]):
            raise OSError(-9998, "Invalid number of channels")
        return original(self, *args, **kwargs)

    return open_stream


def test_stereo_only_device_gets_both_channels(capture, monkeypatch) -> None:
    # No ALSA plugin here refuses mono, so only the refusal is simulated; the
    # stream that then opens and the samples it writes are real.
    refuse = _refusing(pyaudio.PyAudio.open, lambda rate, channels: channels == 1)
    monkeypatch.setattr(pyaudio.PyAudio, "open", refuse)
    player = Player(rate=RATE)
    pcm = sine(440, 0.1)
    player.play([pcm], threading.Event())
    player.close()
    assert capture.raw() == audioop.tostereo(pcm, 2, 1.0, 1.0)


def test_device_with_its_own_rate_gets_resampled_sound(capture, monkeypatch) -> None:
    refuse = _refusing(pyaudio.PyAudio.open, lambda rate, channels: rate == RATE)
    monkeypatch.setattr(pyaudio.PyAudio, "open", refuse)
    player = Player(rate=RATE)
    player.play([sine(1000, 0.5)], threading.Event())
    player.close()
    device_rate = 44100  # what the ALSA file PCM reports as its default rate
    samples = capture.samples()
    assert len(samples) == pytest.approx(0.5 * device_rate, abs=device_rate * 0.01)
    assert pitch(samples, device_rate) == pytest.approx(1000, rel=0.02)  # still a 1 kHz tone
