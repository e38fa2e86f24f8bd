"""A cold text alert's first sound: publish → the first sound chunk handed to the audio device.

Why this module exists: most real alerts carry text, not a recorded clip, and have no pre-tone
to hide speech synthesis behind (docs/performance.md § Targets). The benchmark measures this
figure (benchmarks/speech_bench.py) and tests/e2e/test_speech.py guards it from regressing;
both run it here. A central JSON alert with three sentences of Chinese text never spoken
before (so not in the speech cache), no tone, amplifier warm-up 0, goes through a private
Mosquitto to the whole station in-process (`StationThread`), whose player's
``on_first_write`` hook stamps the first ``stream.write()`` on the same clock as the publish;
real PyAudio writes to an ALSA file PCM. Each alert is cancelled once it has sounded and the
station let go idle. One alert before the measured ones loads pypinyin (the service imports
it at the first text, docs/performance.md); its figure is kept as
``text_first_after_start_ms``.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from gateway.config.loader import load_config
from gateway.config.model import Config
from harness.alsa_capture import alsa_capture
from harness.mosquitto import Mosquitto, Subscriber
from harness.station import AREA, Centre, StationThread, topic, wait_until, write_config
from harness.stats import percentile


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
