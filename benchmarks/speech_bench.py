"""The speech figures: a cold text alert's first sound, and how long real CAP messages hold the air.

Why this module exists: most real alerts carry text, not a recorded clip, and
have no pre-tone to hide speech synthesis behind (docs/performance.md § Targets). The clip
figure (benchmarks/alert_latency.py) never renders speech; this one does:

- ``text_first_sound``: a central JSON alert with three sentences of Chinese
  text never spoken before (so not in the speech cache), no tone, amplifier
  warm-up 0 → the first sound chunk handed to ``stream.write()``; through the
  same real parts as the clip figure (private Mosquitto, the whole station
  in-process, real PyAudio on an ALSA file PCM). Each alert is cancelled once it
  has sounded and the station let go idle. One alert before the measured ones
  loads pypinyin (the service imports it at the first text, docs/performance.md);
  its figure is kept as ``text_first_after_start_ms``.
- ``cap_lengths``: the whole broadcast (tones, speech, repeats, gaps), in seconds,
  of each real CAP vector (tests/data/cap) with the default config: its level's
  default tone and repeat, ``repeat_gap_s`` 2 s, ``repeat_full_max_s`` 45 s. The
  speech is rendered by the station's own code (audio/speech.py) and the length
  added up as the broadcast queue plays it; tests/e2e/test_speech.py checks the
  station's ``played`` receipts against the same bounds.

    python -m benchmarks --only speech
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from audio.pcm import duration_s
from audio.speech import Speaker, SpeechText
from audio.tones import render_tone
from audio.tts import Tts
from audio.voices import Voices
from benchmarks.stats import percentile
from gateway.config import AudioConfig, Config, load_config
from gateway.downlink.cap import parse_cap, speech_parts
from tests.support.alsa_capture import alsa_capture
from tests.support.cap_vectors import CAP_DIR, REAL_VECTORS
from tests.support.mosquitto import Mosquitto, Subscriber
from tests.support.station import AREA, Centre, StationThread, topic, wait_until, write_config

RATE = 22050
#: Figure key of each real vector's broadcast length.
CAP_KEYS = {
    "earthquake.cap": "cap_earthquake_s",
    "earthquake-iso8859-1.cap": "cap_earthquake_iso_s",
    "weather.cap": "cap_weather_s",
    "canada.cap": "cap_canada_s",
}


def _text(n: int) -> str:
    return (
        f"第{n}号紧急通知：卫运河水文站水位超过警戒线{n % 7 + 1}米。"
        "请沿河群众立即向高处转移。"
        f"转移途中注意安全，听从村干部指挥，不要返回取物，咨询电话{12000 + n}。"
    )


def _config(folder: Path, port: int, centre: Centre) -> Config:
    loaded = load_config(write_config(folder, port, centre))
    audio = loaded.audio.model_copy(update={"amp_warmup_s": 0.0, "amp_release_s": 0.0})
    return loaded.model_copy(update={"audio": audio})


def text_first_sound(alerts: int) -> dict[str, Any]:
    """Milliseconds from publish to the first sound chunk, for ``alerts`` uncached text alerts."""
    with (
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp,
        alsa_capture(Path(tmp) / "alsa"),
        Mosquitto() as broker,
    ):
        centre = Centre()
        runner = StationThread(_config(Path(tmp), broker.port, centre), pin_factory=MockFactory())
        station = runner.start()
        publisher = Subscriber(broker.port, ["bench/nothing"])
        wrote = threading.Event()
        written_at = [0.0]

        def on_first_write(_queued_s: float) -> None:
            if not wrote.is_set():
                written_at[0] = time.monotonic()
                wrote.set()

        station.parts.player.on_first_write = on_first_write
        samples: list[float] = []
        try:
            for n in range(alerts + 1):
                alert = centre.alert(text=_text(n), tone="none", repeat=1, level="red")
                raw = centre.seal_alert(alert)
                wrote.clear()
                published_at = time.monotonic()
                publisher.client.publish(topic("alert", AREA[:9]), raw, qos=1)
                if not wrote.wait(30):
                    raise RuntimeError(f"text alert {n} never reached the audio device")
                samples.append((written_at[0] - published_at) * 1000)
                station.parts.queue.cancel_all()
                wait_until(
                    lambda: station.parts.queue.state == "idle", 30, "the station to go idle"
                )
                time.sleep(0.3)  # the rest of the text finishes rendering, as it would
        finally:
            publisher.close()
            runner.stop()
    first, measured = samples[0], samples[1:]
    return {
        "text_p50_ms": [statistics.median(measured)],
        "text_p99_ms": [percentile(measured, 99)],
        "text_max_ms": [max(measured)],
        "text_first_after_start_ms": [first],
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
