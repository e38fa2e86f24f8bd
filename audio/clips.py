"""Recorded messages: WAV clips from the clips folder and inline WAV from an alert.

Recorded clips are the first choice for what a loudspeaker says (a human voice
in the local dialect beats any synthesiser), so clips come from whatever the
county recorded: any common rate, 8/16/24/32-bit integer PCM, mono or stereo,
plain ``WAVE_FORMAT_PCM`` or ``WAVE_FORMAT_EXTENSIBLE`` (what sox and most
editors write for 24-bit). :func:`decode_wav` turns them into the player's
16-bit mono PCM with :mod:`audioop`; anything else (IEEE float, compressed
formats, more than two channels, not a WAV at all, a broken header) is
:class:`BadAudio`, which the gateway reports as a ``bad_audio`` receipt.

A clip is named by the alert (``"clip": "flood_evacuate"``), so the name is
untrusted input even under a valid signature: :func:`load_clip` accepts only
``[a-z0-9_-]{1,64}``, and only a regular file that really lies inside the
clips folder (a symlink pointing out of it, a directory, a FIFO or a device
is :class:`UnknownClip`, like a missing file).
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import wave
from pathlib import Path

from audio.pcm import SAMPLE_WIDTH, audioop

CLIP_NAME = re.compile(r"[a-z0-9_-]{1,64}")
"""What a clip name may look like (the whole name must match)."""

MAX_CLIP_BYTES = 64 * 1024 * 1024
"""Largest clip file accepted: 64 MiB is over 20 minutes of 48 kHz stereo 16-bit."""

_MIN_RATE = 1_000
_MAX_RATE = 384_000
_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_EXTENSIBLE = 0xFFFE


_WAVE_ERRORS = (
    wave.Error,
    EOFError,
    struct.error,
    ValueError,
    RuntimeError,
    OSError,
    audioop.error,
)


class UnknownClip(Exception):
    """The clip name is not allowed, or no such regular file is in the clips folder."""


class BadAudio(Exception):
    """The bytes are not a WAV file this station can play."""


def decode_wav(data: bytes, rate: int) -> bytes:
    """Convert a WAV file's bytes to 16-bit mono PCM at ``rate``.

    Raises BadAudio (with a message saying what is wrong) for anything that is
    not an integer PCM WAV of 1 or 2 channels, 8 to 32 bits.
    """
    try:
        with wave.open(io.BytesIO(_as_plain_pcm(data)), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            in_rate = wav.getframerate()
            _check_format(channels, width, in_rate)
            frames = wav.readframes(wav.getnframes())
        frames = frames[: len(frames) - len(frames) % (channels * width)]
        return _convert(frames, channels, width, in_rate, rate)
    except _WAVE_ERRORS as exc:  # the wave module's errors on broken headers vary
        raise BadAudio(f"not a readable WAV file: {exc!r}") from exc


def load_clip(clips_dir: Path, name: str, rate: int) -> bytes:
    """The clip ``<clips_dir>/<name>.wav`` as 16-bit mono PCM at ``rate``.

    Raises UnknownClip for a bad name or a file that is missing, not regular,
    or outside ``clips_dir``; BadAudio when the file is not playable.
    """
    return decode_wav(_read_clip(clips_dir, name), rate)


def clip_exists(clips_dir: Path, name: str) -> bool:
    """Whether ``name`` would load as a clip file (name and location checks only)."""
    try:
        _clip_path(clips_dir, name)
    except UnknownClip:
        return False
    return True


def _clip_path(clips_dir: Path, name: str) -> Path:
    if not isinstance(name, str) or not CLIP_NAME.fullmatch(name):
        raise UnknownClip(f"clip name {name!r} is not allowed (expected [a-z0-9_-]{{1,64}})")
    try:
        root = clips_dir.resolve(strict=True)
        path = (root / f"{name}.wav").resolve(strict=True)
        st = path.stat()
    except (OSError, RuntimeError) as exc:
        raise UnknownClip(f"clip {name!r} not found in {clips_dir}") from exc
    if path.parent != root:
        raise UnknownClip(f"clip {name!r} points outside {clips_dir}")
    if not stat.S_ISREG(st.st_mode):
        raise UnknownClip(f"clip {name!r} is not a regular file")
    return path


def _read_clip(clips_dir: Path, name: str) -> bytes:
    path = _clip_path(clips_dir, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise UnknownClip(f"clip {name!r} cannot be opened: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UnknownClip(f"clip {name!r} is not a regular file")
        if st.st_size > MAX_CLIP_BYTES:
            raise BadAudio(f"clip {name!r} is {st.st_size} bytes; the limit is {MAX_CLIP_BYTES}")
        return f.read(MAX_CLIP_BYTES + 1)


def _check_format(channels: int, width: int, rate: int) -> None:
    if channels not in (1, 2):
        raise BadAudio(f"{channels} channels; only mono and stereo are supported")
    if width not in (1, 2, 3, 4):
        raise BadAudio(f"{8 * width}-bit samples; only 8, 16, 24 and 32-bit are supported")
    if not _MIN_RATE <= rate <= _MAX_RATE:
        raise BadAudio(f"sample rate {rate} Hz is out of range")


def _convert(frames: bytes, channels: int, width: int, in_rate: int, rate: int) -> bytes:
    """Width first (least data afterwards), then channels, then rate."""
    if width == 1:
        frames = audioop.bias(frames, 1, -128)  # WAV 8-bit is unsigned
    if width != SAMPLE_WIDTH:
        frames = audioop.lin2lin(frames, width, SAMPLE_WIDTH)
    if channels == 2:
        frames = audioop.tomono(frames, SAMPLE_WIDTH, 0.5, 0.5)
    if in_rate != rate:
        frames, _ = audioop.ratecv(frames, SAMPLE_WIDTH, 1, in_rate, rate, None)
    return frames


def _as_plain_pcm(data: bytes) -> bytes:
    """Rewrite a WAVE_FORMAT_EXTENSIBLE integer-PCM header as plain PCM for :mod:`wave`.

    Python 3.11's wave module reads only format tag 1, while sox and most
    editors write tag 0xFFFE (with the PCM sub-format GUID) for 24-bit and
    32-bit files. The sample data is identical, so patching the tag is enough.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise BadAudio("not a WAV file (no RIFF/WAVE header)")
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        if chunk_id == b"fmt ":
            return _patch_fmt(data, pos + 8, size)
        pos += 8 + size + (size & 1)
    raise BadAudio("WAV file has no fmt chunk")


def _patch_fmt(data: bytes, body: int, size: int) -> bytes:
    if size < 16 or body + size > len(data):
        raise BadAudio("WAV fmt chunk is truncated")
    (tag,) = struct.unpack_from("<H", data, body)
    if tag == _FORMAT_FLOAT:
        raise BadAudio("IEEE float WAV is not supported; convert the clip to 16-bit PCM")
    if tag == _FORMAT_PCM:
        return data
    if tag != _FORMAT_EXTENSIBLE or size < 40:
        raise BadAudio(f"WAV format tag 0x{tag:04x} is not integer PCM")
    (sub_format,) = struct.unpack_from("<H", data, body + 24)
    if sub_format != _FORMAT_PCM:
        raise BadAudio(f"WAV sub-format 0x{sub_format:04x} is not integer PCM")
    patched = bytearray(data)
    struct.pack_into("<H", patched, body, _FORMAT_PCM)
    return bytes(patched)
