"""16-bit mono PCM helpers and the one place that imports :mod:`audioop`.

Every module in this package passes sound around as ``bytes`` of signed 16-bit
little-endian mono samples at the player's rate. ``audioop`` does the sample
maths in C (width, channels, rate, volume); it is deprecated in Python 3.11–3.12
and gone from the standard library in 3.13, where the ``audioop-lts`` backport
provides the same module. Importing it here, once, keeps the deprecation
warning out of the service's log and the other modules free of version checks.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["SAMPLE_WIDTH", "audioop", "duration_s", "scale", "silence"]

SAMPLE_WIDTH = 2
"""Bytes per sample of the PCM this package passes around (signed 16-bit LE)."""


def duration_s(pcm: bytes, rate: int) -> float:
    """Seconds of sound in ``pcm`` (16-bit mono at ``rate``)."""
    return len(pcm) / (SAMPLE_WIDTH * rate)


def silence(seconds: float, rate: int) -> bytes:
    """``seconds`` of digital silence at ``rate``."""
    return bytes(SAMPLE_WIDTH * round(seconds * rate))


def scale(pcm: bytes, volume: float) -> bytes:
    """``pcm`` with every sample multiplied by ``volume`` (clipped, not wrapped)."""
    if volume == 1.0:
        return pcm
    return audioop.mul(pcm, SAMPLE_WIDTH, volume)
