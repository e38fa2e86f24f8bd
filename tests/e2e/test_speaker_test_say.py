"""`cunxiang speaker-test --say TEXT --language L`: a technician hears what the station will say.

The real CLI in a subprocess with PyAudio writing into an ALSA file capture: the
text is spoken by the voice for its language (what the output line names) and
that speech is what reaches the loudspeakers, sample for sample as the station's
own speech code renders it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from audio.speech import Speaker, SpeechText
from audio.tts import Tts
from audio.voices import Voices
from harness.alsa_capture import alsa_capture
from harness.sounds import RATE, occurrences
from harness.station import write_config


def speaker_test(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway", "speaker-test", "-c", str(config), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_say_speaks_english_with_the_english_voice(tmp_path: Path) -> None:
    text = "Flash flood watch until noon."
    with alsa_capture(tmp_path / "alsa") as capture:
        config = write_config(tmp_path, 1883)
        done = speaker_test(
            config, capture.env(), "--say", text, "--language", "en-US", "--volume", "1"
        )
        assert done.returncode == 0, done.stderr
        assert "by voice en-us" in done.stdout and "fallback" not in done.stdout
        heard = capture.raw()
    tts = Tts(tmp_path / "tts-cache", rate=RATE)
    stream = Speaker(tts, Voices(tts, {"en": "en-us"})).stream(SpeechText(text, "en-US"))
    stream.start(in_thread=False)
    speech = b"".join(p for p in stream.pieces(0) if p)
    assert len(speech) > RATE  # over half a second of words
    assert len(occurrences(heard, speech[: len(speech) // 2])) == 1


def test_say_in_a_language_without_a_voice_says_it_fell_back(tmp_path: Path) -> None:
    with alsa_capture(tmp_path / "alsa") as capture:
        config = write_config(tmp_path, 1883)
        done = speaker_test(config, capture.env(), "--say", "Sawubona", "--language", "zu")
        assert done.returncode == 0, done.stderr
        assert "fallback" in done.stdout
        assert any(capture.raw())
