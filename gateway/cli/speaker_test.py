"""`cunxiang speaker-test`: a short chime, or some text, through the amplifier and loudspeakers.

The technician's first check after wiring: it switches the amplifier relay on,
waits its warm-up, plays the chime at a low volume and switches it off, and
says plainly what failed if anything did. With `--say TEXT [--language L]` it
speaks TEXT the way an alert in language L would be spoken (docs/protocol.md
§9: the same voice choice, readings and cache as the service), so a technician
hears what the station will say and which voice says it.
"""

from __future__ import annotations

import threading

from audio.amp import Amplifier
from audio.pcm import duration_s
from audio.player import AudioDeviceError, Player
from audio.speech import Speaker, SpeechText
from audio.tones import render_tone
from audio.tts import Tts, TtsUnavailable
from audio.voices import Voices
from gateway.config.model import Config


def play_chime(
    config: Config, volume: float, say: str | None = None, language: str = "zh-CN"
) -> tuple[bool, str]:
    """Play the chime, or speak ``say``; returns (ok, what to tell the technician)."""
    audio = config.audio
    pcm = render_tone("chime", 22050)
    what = "chime"
    if say is not None:
        try:
            pcm, what = _speech(config, say, language)
        except TtsUnavailable as exc:
            return False, f"cannot speak the text: {exc}"
    player = Player(audio.device, volume=volume)
    try:
        amp = Amplifier(
            audio.amp_pin,
            active_high=audio.amp_active_high,
            warmup_s=audio.amp_warmup_s,
            release_s=0.0,
        )
    except Exception as exc:  # gpiozero: pin busy (the service holds it) or no GPIO
        return False, (
            f"audio.amp_pin = {audio.amp_pin}: cannot switch the amplifier relay ({exc}). "
            "If the service is running, ask the centre for a speaker_test command instead."
        )
    try:
        player.open()
        amp.acquire()
        player.play([pcm], threading.Event())
        player.drain()
    except AudioDeviceError as exc:
        return False, f"audio.device = {audio.device!r}: the sound device failed: {exc}"
    finally:
        amp.release()
        amp.close()
        player.close()
    return True, f"{what} played on {audio.device!r} at volume {volume:.2f}"


def _speech(config: Config, text: str, language: str) -> tuple[bytes, str]:
    """``text`` as the station would say it in ``language``, and a line saying how."""
    if config.audio.tts == "none":
        raise TtsUnavailable('audio.tts = "none": the station cannot speak text')
    tts = Tts(config.storage.path.parent / "tts-cache", voice=config.audio.tts_voice)
    voices = Voices(tts, config.audio.tts_voices)
    stream = Speaker(tts, voices).stream(SpeechText(text, language))
    stream.start(in_thread=False)
    pcm = b"".join(p for p in stream.pieces(0) if p)
    choice = voices.choose(language)
    fallback = " (no voice for this language: the fallback)" if stream.voice_fallback else ""
    seconds = duration_s(pcm, tts.rate)
    return pcm, f"{seconds:.1f} s of speech in {language} by voice {choice.voice}{fallback}"
