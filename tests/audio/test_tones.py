"""Tones generated in code: length, level, pitch, and no click at either end."""

from __future__ import annotations

import array

import pytest

from audio.tones import render_tone
from tests.audio.conftest import pitch


def samples(pcm: bytes) -> array.array:
    out = array.array("h")
    out.frombytes(pcm)
    return out


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 48000])
def test_lengths_and_levels(rate: int) -> None:
    siren, chime = samples(render_tone("siren", rate)), samples(render_tone("chime", rate))
    assert len(siren) == 3 * rate
    assert len(chime) == rate
    for tone in (siren, chime):
        peak = max(abs(v) for v in tone)
        assert 0.6 * 32767 <= peak <= 0.75 * 32767  # loud, with headroom
        assert tone[0] == 0 and tone[-1] == 0  # faded: no click


def test_siren_sweeps_between_600_and_1200_hz() -> None:
    rate = 22050
    siren = samples(render_tone("siren", rate))
    tenth = rate // 10
    pitches = [pitch(siren[i : i + tenth], rate) for i in range(0, len(siren) - tenth, tenth)]
    # the third harmonic adds crossings, so measure the slope of the sweep, not absolutes
    assert min(pitches) < 0.7 * max(pitches)
    assert pitches[0] < pitches[7] and pitches[7] > pitches[14]  # up, then down (1.5 s period)


def test_chime_is_two_notes_high_then_low() -> None:
    rate = 22050
    chime = samples(render_tone("chime", rate))
    first, second = chime[: int(0.3 * rate)], chime[int(0.5 * rate) : int(0.8 * rate)]
    assert pitch(first, rate) == pytest.approx(659.25, rel=0.05)
    assert pitch(second, rate) == pytest.approx(523.25, rel=0.05)


def test_none_is_empty_and_unknown_names_are_refused() -> None:
    assert render_tone("none", 22050) == b""
    with pytest.raises(ValueError, match="unknown tone"):
        render_tone("klaxon", 22050)
    with pytest.raises(ValueError, match="too low"):
        render_tone("siren", 2000)
