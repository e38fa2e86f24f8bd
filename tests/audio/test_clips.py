"""WAV decoding on real files (written by sox and by the wave module) and clip path safety."""

from __future__ import annotations

import array
import io
import math
import os
import subprocess
import wave
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audio.clips import CLIP_NAME, MAX_CLIP_BYTES, BadAudio, UnknownClip, decode_wav, load_clip
from tests.audio.conftest import pitch, sine

RATE = 16000


def sox_wav(path: Path, *args: str, seconds: float = 0.5, freq: int = 440) -> bytes:
    """A sine written by sox with the given format options (-r, -c, -b, -e)."""
    cmd = ["sox", "-n", *args, str(path), "synth", str(seconds), "sine", str(freq), "vol", "0.8"]
    subprocess.run(cmd, check=True, capture_output=True)
    return path.read_bytes()


def wav_bytes(frames: bytes, *, rate: int, channels: int = 1, width: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def as_samples(pcm: bytes) -> array.array:
    out = array.array("h")
    out.frombytes(pcm)
    return out


@pytest.mark.parametrize(
    "fmt",
    [
        ["-r", "8000", "-c", "1", "-b", "8", "-e", "unsigned-integer"],
        ["-r", "11025", "-c", "1", "-b", "16"],
        ["-r", "22050", "-c", "2", "-b", "16"],
        ["-r", "44100", "-c", "2", "-b", "24"],  # sox writes WAVE_FORMAT_EXTENSIBLE here
        ["-r", "48000", "-c", "1", "-b", "32", "-e", "signed-integer"],
        ["-r", "96000", "-c", "2", "-b", "16"],
    ],
    ids=lambda f: "-".join(f[1::2]),
)
def test_common_formats_become_16_bit_mono_at_the_player_rate(tmp_path, fmt) -> None:
    pcm = decode_wav(sox_wav(tmp_path / "in.wav", *fmt), RATE)
    samples = as_samples(pcm)
    assert len(samples) == pytest.approx(0.5 * RATE, abs=RATE * 0.01)
    assert pitch(samples, RATE) == pytest.approx(440, rel=0.02)
    peak = max(abs(v) for v in samples) / 32767
    assert peak == pytest.approx(0.8, abs=0.05)  # level kept through every conversion


def test_16_bit_mono_at_the_same_rate_passes_unchanged() -> None:
    pcm = sine(440, 0.2, RATE)
    assert decode_wav(wav_bytes(pcm, rate=RATE), RATE) == pcm


def test_stereo_is_mixed_to_mono() -> None:
    left = as_samples(sine(440, 0.1, RATE, amplitude=0.8))
    stereo = array.array("h")
    for v in left:
        stereo.extend((v, 0))  # right channel silent
    mono = as_samples(decode_wav(wav_bytes(stereo.tobytes(), rate=RATE, channels=2), RATE))
    assert len(mono) == len(left)
    assert all(abs(m - v / 2) <= 1 for m, v in zip(mono, left, strict=True))


def test_8_bit_wav_is_unsigned() -> None:
    pcm = decode_wav(wav_bytes(bytes([128, 255, 0, 192]), rate=RATE, width=1), RATE)
    assert list(as_samples(pcm)) == [0, 127 * 256, -128 * 256, 64 * 256]


def test_truncated_data_keeps_the_whole_frames() -> None:
    data = wav_bytes(sine(440, 0.1, RATE, amplitude=0.5), rate=RATE)
    pcm = decode_wav(data[:-3], RATE)  # cut inside a frame, header still says more
    assert len(pcm) == len(data) - 44 - 4


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        (["-r", "48000", "-c", "1", "-b", "32", "-e", "floating-point"], "float"),
        (["-r", "8000", "-c", "1", "-e", "mu-law"], "not integer PCM"),
        (["-r", "16000", "-c", "3", "-b", "16"], "3 channels"),
    ],
    ids=["float32", "mu-law", "3-channels"],
)
def test_unsupported_wavs_are_bad_audio(tmp_path, fmt, message) -> None:
    with pytest.raises(BadAudio, match=message):
        decode_wav(sox_wav(tmp_path / "in.wav", *fmt), RATE)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, not audio",
        b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(100),  # an MP3
        b"RIFF\x24\x00\x00\x00WAVEdata\x00\x00\x00\x00",  # no fmt chunk
        wav_bytes(bytes(100), rate=RATE)[:30],  # header cut short
        b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00" + bytes(16),  # zero channels/rate
    ],
    ids=["empty", "text", "mp3", "no-fmt", "short-header", "zeros"],
)
def test_broken_data_is_bad_audio(data: bytes) -> None:
    with pytest.raises(BadAudio):
        decode_wav(data, RATE)


_VALID = wav_bytes(sine(440, 0.02, 8000), rate=8000)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda pos, junk: _VALID[:pos] + junk + _VALID[pos + len(junk) :],
            st.integers(0, len(_VALID)),
            st.binary(min_size=1, max_size=8),
        ),
    )
)
def test_any_bytes_decode_or_raise_bad_audio_only(data: bytes) -> None:
    try:
        pcm = decode_wav(data, RATE)
    except BadAudio:
        return
    assert len(pcm) % 2 == 0


# -- clip names and paths ------------------------------------------------------


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "flood_evacuate.wav").write_bytes(wav_bytes(sine(440, 0.1, RATE), rate=RATE))
    return folder


def test_load_clip(clips: Path) -> None:
    assert load_clip(clips, "flood_evacuate", RATE) == sine(440, 0.1, RATE)


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "..",
        "../clips/flood_evacuate",
        "sub/clip",
        "/etc/passwd",
        "Flood",
        "flood.wav",
        "",
        "x" * 65,
        "flood\x00",
        "flood_evacuate\n",
        "missing",
    ],
)
def test_bad_or_unknown_names_are_unknown_clip(clips: Path, name: str) -> None:
    with pytest.raises(UnknownClip):
        load_clip(clips, name, RATE)


def test_clip_name_pattern() -> None:
    assert CLIP_NAME.fullmatch("co_alarm-2")
    assert not CLIP_NAME.fullmatch("co.alarm")


def test_symlink_out_of_the_folder_is_refused(clips: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.wav"
    outside.write_bytes(wav_bytes(sine(440, 0.1, RATE), rate=RATE))
    (clips / "leak.wav").symlink_to(outside)
    (clips / "passwd.wav").symlink_to("/etc/passwd")
    for name in ("leak", "passwd"):
        with pytest.raises(UnknownClip, match="outside"):
            load_clip(clips, name, RATE)


def test_symlink_within_the_folder_is_fine(clips: Path) -> None:
    (clips / "alias.wav").symlink_to("flood_evacuate.wav")
    assert load_clip(clips, "alias", RATE) == sine(440, 0.1, RATE)


def test_directory_and_fifo_are_not_clips(clips: Path) -> None:
    (clips / "folder.wav").mkdir()
    os.mkfifo(clips / "pipe.wav")
    for name in ("folder", "pipe"):  # the FIFO must not block the reader
        with pytest.raises(UnknownClip, match="regular file"):
            load_clip(clips, name, RATE)


def test_missing_clips_folder(tmp_path: Path) -> None:
    with pytest.raises(UnknownClip, match="not found"):
        load_clip(tmp_path / "nowhere", "flood", RATE)


def test_non_wav_and_oversize_clips_are_bad_audio(clips: Path) -> None:
    (clips / "text.wav").write_text("this is not audio")
    with pytest.raises(BadAudio):
        load_clip(clips, "text", RATE)
    with open(clips / "huge.wav", "wb") as f:
        f.truncate(MAX_CLIP_BYTES + 1)  # sparse: no disk used
    with pytest.raises(BadAudio, match="limit"):
        load_clip(clips, "huge", RATE)


def test_level_survives_resampling_of_a_full_scale_square(tmp_path) -> None:
    # a full-scale square wave must not wrap around when resampled and mixed
    n = 4410
    square = array.array("h", (32767 if (i // 50) % 2 else -32768 for i in range(n)))
    stereo = array.array("h")
    for v in square:
        stereo.extend((v, v))
    pcm = as_samples(decode_wav(wav_bytes(stereo.tobytes(), rate=44100, channels=2), 8000))
    assert max(pcm) > 30000 and min(pcm) < -30000
    assert math.isclose(len(pcm), n * 8000 / 44100, abs_tol=2)
