"""Quick figures for the audio path: how long from submit to the first sound chunk.

Why this script exists: docs/performance.md § Targets allows 15 ms (p50) from alert publish to
the first sound chunk handed to PyAudio's ``stream.write()``. This measures the audio
package's share of that budget — ``BroadcastQueue.submit()`` of a clip broadcast (no
tone, warm-up 0, the amplifier relay on a MockFactory pin) to the Player's
``on_first_write`` hook — with real PyAudio writing to an ALSA ``file`` PCM, plus the
costs around it (opening the device, tones, clip decoding, pinyin, TTS cold and cached).

    python benchmarks/audio_quick.py [--alerts 200] [--json FILE]

Between alerts the queue is allowed to go idle (stream stopped, relay released), as it
would be between real alerts, so every measurement includes restarting the stream.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpiozero.pins.mock import MockFactory

from audio.amp import Amplifier
from audio.broadcast import Broadcast
from audio.broadcast_queue import BroadcastQueue
from audio.clips import load_clip
from audio.player import Player
from audio.tones import render_tone
from audio.tts import Tts, to_pinyin
from harness.alsa_capture import alsa_capture
from harness.stats import percentile

RATE = 22050
TEXT = "紧急通知：卫运河水位超过警戒线，请沿河群众立即向高处转移。"


def timed_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def write_clip(folder: Path) -> None:
    folder.mkdir()
    with wave.open(str(folder / "flood.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(render_tone("chime", RATE)[: 2 * RATE // 10])  # 0.1 s


def submit_to_first_write(clips: Path, alerts: int) -> list[float]:
    """Milliseconds from submit() to the first stream.write() of each alert."""
    first_write = threading.Event()
    stamps: list[float] = []

    def hook(_queued: float) -> None:
        stamps.append(time.perf_counter())
        first_write.set()

    played = threading.Event()
    player = Player("default", rate=RATE, on_first_write=hook)
    factory = MockFactory()
    amp = Amplifier(27, warmup_s=0.0, release_s=0.0, pin_factory=factory)
    queue = BroadcastQueue(
        player,
        amp,
        repeat_gap_s=0.0,
        retries=0,
        on_status=lambda _id, status, _extra: played.set() if status == "played" else None,
        on_fault=lambda reason: None,
    )
    queue.wait_ready(5)
    latencies = []
    try:
        for n in range(alerts):
            played.clear()
            first_write.clear()
            speech = lambda: load_clip(clips, "flood", RATE)  # noqa: E731
            start = time.perf_counter()
            queue.submit(Broadcast(f"bench-{n}", "red", True, "none", speech))
            first_write.wait(5)
            latencies.append((stamps[-1] - start) * 1000)
            played.wait(5)
            while queue.snapshot() or player.queued_s() > 0 or amp.is_on:
                time.sleep(0.005)  # let it go idle: stream stopped, relay off
    finally:
        queue.close()
        factory.reset()
    return latencies


def costs(clips: Path, cache: Path) -> dict[str, float]:
    player = Player("default", rate=RATE)
    opened = timed_ms(player.open)
    player.close()
    tts = Tts(cache, rate=RATE)
    return {
        "open_device_ms": opened,
        "siren_cold_ms": timed_ms(lambda: render_tone("siren", 44100)),
        "clip_decode_ms": timed_ms(lambda: load_clip(clips, "flood", RATE)),
        "pinyin_ms": timed_ms(lambda: to_pinyin(TEXT)),
        "tts_cold_ms": timed_ms(lambda: tts.render(TEXT)),
        "tts_cached_ms": timed_ms(lambda: tts.render(TEXT)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, alsa_capture(Path(tmp) / "alsa"):
        clips = Path(tmp) / "clips"
        write_clip(clips)
        latencies = submit_to_first_write(clips, args.alerts)
        extra = costs(clips, Path(tmp) / "tts")
    result = {
        "alerts": len(latencies),
        "submit_to_first_write_ms_p50": statistics.median(latencies),
        "submit_to_first_write_ms_p99": percentile(latencies, 99),
        "submit_to_first_write_ms_max": max(latencies),
        **extra,
    }
    for key, value in result.items():
        print(f"{key:34} {value:10.3f}" if isinstance(value, float) else f"{key:34} {value:>10}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
