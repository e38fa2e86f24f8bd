"""`cunxiang speaker-test`: a short chime through the amplifier and the loudspeakers.

The technician's first check after wiring: it switches the amplifier relay on,
waits its warm-up, plays the chime at a low volume and switches it off, and
says plainly what failed if anything did.
"""

from __future__ import annotations

import threading

from audio.amp import Amplifier
from audio.player import AudioDeviceError, Player
from audio.tones import render_tone
from gateway.config import Config


def play_chime(config: Config, volume: float) -> tuple[bool, str]:
    """Play the chime; returns (ok, what to tell the technician)."""
    audio = config.audio
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
        player.play([render_tone("chime", player.rate)], threading.Event())
        player.drain()
    except AudioDeviceError as exc:
        return False, f"audio.device = {audio.device!r}: the sound device failed: {exc}"
    finally:
        amp.release()
        amp.close()
        player.close()
    return True, f"chime played on {audio.device!r} at volume {volume:.2f}"
