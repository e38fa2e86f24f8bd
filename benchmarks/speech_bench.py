"""The speech figures: how long real CAP messages hold the air.

Why this module exists: most real alerts carry text, not a recorded clip (docs/performance.md
§ Targets). Their other figure, a cold text alert's first sound, is taken by
harness/text_first_sound.py (tests/e2e/test_speech.py runs it too, as a regression guard);
this one is ``cap_lengths``: the whole broadcast (tones, speech, repeats, gaps), in seconds,
of each real CAP vector (tests/data/cap) with the default config: its level's default tone
and repeat, ``repeat_gap_s`` 2 s, ``repeat_full_max_s`` 45 s. The speech is rendered by the
station's own code (audio/speech.py) and the length added up as the broadcast queue plays
it; tests/e2e/test_speech.py checks the station's ``played`` receipts against the same bounds.

    python -m benchmarks --only speech
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from audio.pcm import duration_s
from audio.speech import Speaker, SpeechText
from audio.tones import render_tone
from audio.tts import Tts
from audio.voices import Voices
from gateway.config.sections import AudioConfig
from gateway.downlink.cap import parse_cap, speech_parts
from harness.cap_vectors import CAP_DIR, REAL_VECTORS

RATE = 22050
#: Figure key of each real vector's broadcast length.
CAP_KEYS = {
    "earthquake.cap": "cap_earthquake_s",
    "earthquake-iso8859-1.cap": "cap_earthquake_iso_s",
    "weather.cap": "cap_weather_s",
    "canada.cap": "cap_canada_s",
}


def cap_lengths() -> dict[str, Any]:
    """Seconds of the whole broadcast of each real CAP vector, with the default config."""
    audio = AudioConfig()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tts = Tts(Path(tmp), voice=audio.tts_voice, rate=RATE)
        speaker = Speaker(
            tts, Voices(tts, audio.tts_voices), repeat_full_max_s=audio.repeat_full_max_s
        )
        for name in REAL_VECTORS:
            raw = (CAP_DIR / name).read_bytes()
            alert = parse_cap(raw)
            stream = speaker.stream(SpeechText(alert.text, alert.language, speech_parts(raw)))
            stream.start(in_thread=False)
            first = sum(duration_s(p, RATE) for p in stream.pieces(0) if p)
            again = sum(duration_s(p, RATE) for p in stream.pieces(1) if p)
            tone = duration_s(render_tone(audio.default_tone[alert.level], RATE), RATE)
            repeat = audio.default_repeat[alert.level]
            total = repeat * tone + first + (repeat - 1) * (audio.repeat_gap_s + again)
            out[CAP_KEYS[name]] = [round(total, 1)]
            out[f"{CAP_KEYS[name]}_first_play"] = [round(first, 1)]
    return out
