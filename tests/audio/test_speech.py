"""Speech in the message's language, piece by piece (audio/speech*.py, audio/voices.py).

With the real espeak-ng: which voice a language gets, how text is cut into
pieces and segments, what espeak-ng is given for times and units (and that
`espeak-ng -x` then reads words), the long-message rule for repeats, nothing
speakable, and the warm spare engines.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from audio.pcm import duration_s
from audio.speech import Speaker, SpeechText
from audio.speech_text import pieces, reading, segments, sentences, summary
from audio.tts import Tts, TtsUnavailable
from audio.voices import Voices

RATE = 22050


def speaker(tmp_path: Path, *, repeat_full_max_s: float = 45.0, spares: bool = False) -> Speaker:
    tts = Tts(tmp_path / "cache", rate=RATE, spares=spares)
    return Speaker(
        tts, Voices(tts, {"en": "en-us", "fr": "fr-fr"}), repeat_full_max_s=repeat_full_max_s
    )


@pytest.mark.parametrize(
    ("language", "voice", "fallback"),
    [
        ("zh-CN", "cmn-latn-pinyin", False),
        ("en-US", "en-us", False),
        ("en-GB", "en-us", False),  # audio.tts_voices maps the prefix
        ("fr-CA", "fr-fr", False),  # the prefix, then espeak-ng's own list
        ("es-US", "es", False),  # not configured: espeak-ng's voice for es
        ("sp-US", "cmn-latn-pinyin", True),  # USGS's code for Spanish: no such language
        ("zu", "cmn-latn-pinyin", True),
    ],
)
def test_voice_choice(tmp_path: Path, language: str, voice: str, fallback: bool) -> None:
    choice = speaker(tmp_path).voices.choose(language)
    assert (choice.voice, choice.fallback) == (voice, fallback)


def test_english_readings_make_espeak_say_words() -> None:
    text = reading("issued at 4:07AM MDT until 12:00PM, 1-2 inches, 50 km/h, 5°C", "en-US")
    assert text == (
        "issued at 4 oh 7 A M MDT until 12 P M, 1 to 2 inches, "
        "50 kilometers per hour, 5 degrees Celsius"
    )
    said = subprocess.run(
        ["espeak-ng", "-x", "-q", "-v", "en-us", text], capture_output=True, check=True
    ).stdout.decode()
    assert "'oU s'Ev@n" in said and "z'i@roU" not in said  # "oh seven", not "zero seven"


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("at 23:25:40.68 UTC on Aug 30", "at 23 25 and 40 seconds UTC on Aug 30"),
        ("12:00PM MDT", "12 P M MDT"),
        ("at 12:00 today", "at 12 o'clock today"),
        ("4:07 a.m.", "4 oh 7 A M"),
        ("3 PM", "3 P M"),
    ],
)
def test_english_times(written: str, read: str) -> None:
    assert reading(written, "en") == read


def test_french_readings() -> None:
    assert reading("à 16h30, 10-15 cm, vents de 90 km/h, à 08:05", "fr-CA") == (
        "à 16 heures 30, 10 à 15 cm, vents de 90 kilomètres heure, à 08 heures 5"
    )


def test_pieces_first_is_short_and_never_splits_a_token() -> None:
    text = "一氧化碳(CO)和PM2.5浓度超标，请关好门窗。注意安全。"
    assert pieces(text, chinese=True) == [
        "一氧化碳(CO)和",
        "PM2.5浓度超标，请关好门窗。",
        "注意安全。",
    ]
    english = "Flash Flood Watch issued August 30 at 4:07AM MDT by NWS Great Falls. Stay alert."
    first, *rest = pieces(english, chinese=False)
    assert first == "Flash Flood Watch issued August 30 at"
    assert rest == ["4:07AM MDT by NWS Great Falls.", "Stay alert."]


def test_latin_text_joins_hard_wraps_and_summary_is_first_and_last() -> None:
    text = "THE WATCH CONTINUES\nFOR THE COUNTY. RAIN IS LIKELY.\n\nMOVE TO HIGHER GROUND."
    assert sentences(text, chinese=False) == [
        "THE WATCH CONTINUES FOR THE COUNTY.",
        "RAIN IS LIKELY.",
        "MOVE TO HIGHER GROUND.",
    ]
    assert (
        summary(text, chinese=False)
        == "THE WATCH CONTINUES FOR THE COUNTY.\nMOVE TO HIGHER GROUND."
    )


def test_segments_words_to_english_acronyms_spelled_in_chinese() -> None:
    cut = segments("请打开Flash Flood应用，CO超标", chinese=True, language="zh-CN", english=True)
    assert [(s.text, s.chinese) for s in cut] == [
        ("请打开", True),
        ("Flash Flood", False),
        ("应用，CO超标", True),
    ]


def test_long_message_repeats_say_headline_and_instruction(tmp_path: Path) -> None:
    message = SpeechText(
        "Storm alert\nA long description. Of many sentences.\nStay indoors.",
        "en-US",
        ("Storm alert", "A long description. Of many sentences.", "Stay indoors."),
    )
    short = speaker(tmp_path, repeat_full_max_s=1.0).stream(message)
    short.start(in_thread=False)
    full = speaker(tmp_path, repeat_full_max_s=45.0).stream(message)
    full.start(in_thread=False)
    first = sum(duration_s(p, RATE) for p in short.pieces(0) if p)
    again = sum(duration_s(p, RATE) for p in short.pieces(1) if p)
    assert first > 1.0
    assert 0.3 * first < again < 0.8 * first  # the description left out
    assert list(full.pieces(1)) == list(full.pieces(0))  # short enough: everything again


def test_nothing_speakable_is_tts_unavailable(tmp_path: Path) -> None:
    stream = speaker(tmp_path).stream(SpeechText("。。。 ……", "zh-CN"))
    stream.start(in_thread=False)
    with pytest.raises(TtsUnavailable, match="no voice can say"):
        list(stream.pieces(0))


def test_a_language_without_a_voice_is_spoken_and_marked(tmp_path: Path) -> None:
    stream = speaker(tmp_path).stream(SpeechText("Sawubona. Hamba kahle.", "zu"))
    stream.start(in_thread=False)
    assert sum(len(p) for p in stream.pieces(0) if p) > RATE
    assert stream.voice_fallback


def test_warm_spare_renders_the_same_sound_and_is_cleaned_up(tmp_path: Path) -> None:
    cold = Tts(tmp_path / "cold", rate=RATE)
    warm = Tts(tmp_path / "warm", rate=RATE, spares=True)
    warm.render("预热")  # the first render starts a spare for the voice
    time.sleep(0.5)  # ... which loads its voice meanwhile
    assert warm.render("注意安全", urgent=True) == cold.render("注意安全")
    warm.close()
    assert not list((tmp_path / "warm").glob("spare-*"))
