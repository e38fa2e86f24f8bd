"""Sounds a station is given to play, and finding them again in what its loudspeakers got.

Why this module exists: the end-to-end tests and the fault scenarios both judge a broadcast by
its samples: they hand the station a clip or an inline WAV of a sine with no zero sample (so
the capture shows it as one sound run, harness/alsa_capture.py) and then look for exactly those
bytes, sample-aligned, in the capture. RATE is the station's player rate, so the sound reaches
the capture unchanged.
"""

from __future__ import annotations

import array
import io
import math
import wave
from collections.abc import Iterator
from pathlib import Path

RATE = 22050
"""The service's player rate: clips and inline audio at this rate reach the capture unchanged."""


def sine_pcm(freq: float, seconds: float, amplitude: float = 0.3) -> bytes:
    """16-bit mono PCM at RATE; no sample is zero, so the capture shows it as one sound run."""
    peak = amplitude * 32767
    samples = array.array("h")
    for i in range(round(seconds * RATE)):
        samples.append(round(peak * math.sin(2 * math.pi * freq * i / RATE + 0.5)) or 1)
    return samples.tobytes()


def wav_bytes(pcm: bytes) -> bytes:
    """A WAV file of 16-bit mono PCM at RATE, in memory (for inline audio)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm)
    return buffer.getvalue()


def write_clip(clips_dir: Path, name: str, pcm: bytes) -> None:
    """`clips_dir/name.wav`: 16-bit mono WAV at RATE holding `pcm`."""
    clips_dir.mkdir(parents=True, exist_ok=True)
    (clips_dir / f"{name}.wav").write_bytes(wav_bytes(pcm))


def _aligned(haystack: bytes, needle: bytes) -> Iterator[int]:
    start = 0
    while (index := haystack.find(needle, start)) != -1:
        if index % 2 == 0:
            yield index
        start = index + 1


def occurrences(haystack: bytes, needle: bytes) -> list[int]:
    """Sample-aligned byte offsets at which `needle` occurs in `haystack`."""
    return list(_aligned(haystack, needle))


def contains(haystack: bytes, needle: bytes) -> bool:
    """True when `needle` occurs sample-aligned in `haystack`."""
    return next(_aligned(haystack, needle), None) is not None
