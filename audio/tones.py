"""Attention tones played before a message: generated in code, no files to lose.

A warning starts with a tone so that people outdoors turn towards the
loudspeaker before the words begin (the same habit as the J-Alert and the
Chinese 应急广播 practice of a 提示音 before the message):

- ``siren``: a civil-defence style wail, 3 s, sweeping smoothly between
  600 Hz and 1,200 Hz twice. Horn loudspeakers carry that band best, and a
  third harmonic makes it cut through wind and rain. For red and orange levels.
- ``chime``: a two-note "ding-dong" (E5 then C5) with a bell-like decay,
  1 s. For yellow and blue levels and the speaker test.
- ``none``: nothing.

Both are 16-bit mono PCM at the requested rate, peaking at about −3 dBFS, with
short fades so the amplifier never gets a click. Rendering takes tens of
milliseconds in pure Python, so results are cached per (name, rate); the
broadcast queue renders them once when it starts.
"""

from __future__ import annotations

import array
import functools
import math
import sys

TONE_NAMES = ("siren", "chime", "none")

_PEAK = 0.7 * 32767
_FADE_S = 0.01


def render_tone(name: str, rate: int) -> bytes:
    """The tone ``name`` ("siren", "chime" or "none") as 16-bit mono PCM at ``rate``.

    Raises ValueError for an unknown name or a rate below 4,000 Hz (the siren
    would alias).
    """
    if name not in TONE_NAMES:
        raise ValueError(f"unknown tone {name!r}; expected one of {', '.join(TONE_NAMES)}")
    if rate < 4000:
        raise ValueError(f"sample rate {rate} Hz is too low for tones (minimum 4000)")
    return _render_cached(name, rate)


@functools.lru_cache(maxsize=16)
def _render_cached(name: str, rate: int) -> bytes:
    if name == "siren":
        return _to_pcm(_siren(rate), rate)
    if name == "chime":
        return _to_pcm(_chime(rate), rate)
    return b""


def _siren(rate: int, seconds: float = 3.0, cycles: int = 2) -> list[float]:
    """A smooth wail: frequency follows a raised cosine between f_lo and f_hi."""
    f_lo, f_hi = 600.0, 1200.0
    period = seconds / cycles
    n = round(seconds * rate)
    phase = 0.0
    out = []
    for i in range(n):
        t = i / rate
        freq = f_lo + (f_hi - f_lo) * (0.5 - 0.5 * math.cos(2 * math.pi * t / period))
        phase += 2 * math.pi * freq / rate
        out.append(math.sin(phase) + 0.3 * math.sin(3 * phase))
    return out


def _chime(rate: int) -> list[float]:
    """Two bell-like notes, each with a decaying fundamental and octave."""
    out: list[float] = []
    for freq, seconds in ((659.25, 0.45), (523.25, 0.55)):
        n = round(seconds * rate)
        for i in range(n):
            t = i / rate
            envelope = math.exp(-4.0 * t)
            wave = math.sin(2 * math.pi * freq * t) + 0.35 * math.sin(4 * math.pi * freq * t)
            out.append(envelope * wave)
    return out


def _to_pcm(signal: list[float], rate: int) -> bytes:
    """Normalise to the peak level, fade both ends, pack as signed 16-bit."""
    peak = max(abs(v) for v in signal) or 1.0
    gain = _PEAK / peak
    fade = max(1, round(_FADE_S * rate))
    n = len(signal)
    samples = array.array("h", bytes(2 * n))
    for i, v in enumerate(signal):
        ramp = min(1.0, i / fade, (n - 1 - i) / fade)
        samples[i] = round(v * gain * ramp)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()
