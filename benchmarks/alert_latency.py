"""Central alert publish → first sound chunk handed to PyAudio's ``stream.write()``.

Why this script exists: docs/performance.md § Targets promises that the alert path adds nothing
a listener could notice — at most 15 ms at p50 and 50 ms at p99 from the moment the
centre publishes a signed alert (a clip, no tone, amplifier warm-up 0) to the moment
the station hands the first chunk of sound to the audio device. This measures exactly
that, through every real part: a private Mosquitto on loopback, the whole station
(`gateway.service.Station`: paho downlink, envelope verification, parsing, the SQLite
alert log and receipts, the broadcast queue, the amplifier relay on a gpiozero
MockFactory pin) and real PyAudio writing to an ALSA ``file`` PCM.

The station runs in this process (harness/station.py ``StationThread``) so the
player's ``on_first_write`` hook can stamp the write on the same ``time.monotonic()``
clock as the publish. Before each alert the station is let go fully idle — stream
stopped, relay off (``amp_release_s`` 0) — as it is when a real alert arrives, so
every figure includes restarting the stream and switching the relay. The centre's
publisher is a client that only publishes (as `cunxiang alert send` does); receipts
are read by a second client.

Two broker set-ups are measured. Mosquitto's defaults leave Nagle's algorithm on
(``set_tcp_nodelay false``): a PUBLISH to the station then waits whenever the broker's
previous small packet to it (a PUBACK of a receipt) is not yet acknowledged, which the
station's kernel delays unless the uplink asks for quick acknowledgements (it does,
gateway/uplink/mqtt_client.py; before that this row read ~25 ms p50). ``set_tcp_nodelay true`` (EMQX
and VerneMQ default to no-delay) shows the broker-side fix. The ``station`` columns
time the station's own part: from the event loop taking the message (``Intake.handle``)
to the first write.

    python benchmarks/alert_latency.py [--alerts 200] [--json benchmarks/results/alert_latency.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpiozero.pins.mock import MockFactory

from audio.tones import render_tone
from gateway.config.loader import load_config
from gateway.config.model import Config
from harness.alsa_capture import alsa_capture
from harness.mosquitto import Mosquitto, Subscriber
from harness.station import (
    AREA,
    Centre,
    StationThread,
    station_topic,
    topic,
    wait_until,
    write_config,
)
from harness.stats import percentile

RATE = 22050
AMP_PIN = 27
CLIP = "flood"
TARGET_P50_MS = 15.0
TARGET_P99_MS = 50.0
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "alert_latency.json"
FIGURE = "central alert publish -> first sound chunk handed to stream.write()"
CONDITIONS = (
    "loopback private Mosquitto, QoS 1, a 50 ms clip, no tone, amplifier warm-up 0 and "
    "release 0 (relay on a MockFactory pin), station in-process, real PyAudio on an ALSA "
    "file PCM, station idle before each alert"
)


def write_clip(clips: Path) -> None:
    """A 50 ms clip: short, so 200 alerts take seconds; its length does not affect latency."""
    clips.mkdir(parents=True, exist_ok=True)
    with wave.open(str(clips / f"{CLIP}.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(render_tone("chime", RATE)[: 2 * RATE // 20])


def station_config(folder: Path, port: int, centre: Centre) -> Config:
    """The test station's config with the relay on a pin, warm-up 0 and release 0."""
    path = write_config(folder, port, centre, audio=f"amp_pin = {AMP_PIN}")
    write_clip(folder / "clips")
    loaded = load_config(path)
    audio = loaded.audio.model_copy(update={"amp_warmup_s": 0.0, "amp_release_s": 0.0})
    return loaded.model_copy(update={"audio": audio})


@dataclass
class Sample:
    """One alert: publish → first write, and the station's own part of it (ms)."""

    total_ms: float
    station_ms: float


class Bench:
    """Publishes alerts one at a time and times each to its first stream.write()."""

    def __init__(
        self,
        station: Any,
        centre: Centre,
        publisher: Subscriber,
        receipts: Subscriber,
        pins: MockFactory,
    ) -> None:
        self.station = station
        self.centre = centre
        self.publisher = publisher
        self.receipts = receipts
        self.pin = pins.pin(AMP_PIN)
        self.first_write = threading.Event()
        self.written_at = 0.0
        self.handled_at = 0.0
        station.parts.player.on_first_write = self._on_first_write
        handle = station.parts.intake.handle

        def timed_handle(topic_: str, payload: bytes) -> None:
            self.handled_at = time.monotonic()
            handle(topic_, payload)

        station.parts.intake.handle = timed_handle

    def _on_first_write(self, _queued_s: float) -> None:
        self.written_at = time.monotonic()
        self.first_write.set()

    def one(self, n: int) -> Sample:
        """Publish alert `n` and time it to its first write."""
        alert = self.centre.alert(id=f"bench-{n}-{time.time_ns()}", clip=CLIP, tone="none")
        raw = self.centre.seal_alert(alert)  # signing is the centre's time, not the station's
        self.first_write.clear()
        published_at = time.monotonic()
        self.publisher.client.publish(topic("alert", AREA[:9]), raw, qos=1)
        if not self.first_write.wait(10):
            raise RuntimeError(f"alert {n} never reached the audio device")
        sample = Sample(
            (self.written_at - published_at) * 1000, (self.written_at - self.handled_at) * 1000
        )
        self._wait_idle(alert.id)
        return sample

    def _wait_idle(self, alert_id: str) -> None:
        played = f'"alert":"{alert_id}","status":"played"'.encode()
        self.receipts.wait_for(lambda m: played in m.payload, timeout=10)
        wait_until(
            lambda: self.station.parts.queue.state == "idle" and not self.pin.state,
            10,
            "the station to go idle (stream stopped, relay off)",
        )


def measure(alerts: int, broker_nodelay: bool) -> list[Sample]:
    """`alerts` alerts through a fresh broker and station."""
    extra = ["set_tcp_nodelay true"] if broker_nodelay else []
    with (
        tempfile.TemporaryDirectory() as tmp,
        alsa_capture(Path(tmp) / "alsa"),
        Mosquitto(extra_config=extra) as broker,
    ):
        centre = Centre()
        pins = MockFactory()
        runner = StationThread(station_config(Path(tmp), broker.port, centre), pin_factory=pins)
        station = runner.start()
        publisher = Subscriber(broker.port, ["bench/nothing"])
        receipts = Subscriber(broker.port, [station_topic("receipt")])
        try:
            bench = Bench(station, centre, publisher, receipts, pins)
            return [bench.one(n) for n in range(alerts)]
        finally:
            publisher.close()
            receipts.close()
            runner.stop()
            pins.reset()


def summary(name: str, samples: list[Sample]) -> dict[str, Any]:
    total = [s.total_ms for s in samples]
    own = [s.station_ms for s in samples]
    p50, p99 = statistics.median(total), percentile(total, 99)
    return {
        "broker": name,
        "alerts": len(samples),
        "warmup_alerts": 0,
        "p50_ms": round(p50, 3),
        "p90_ms": round(percentile(total, 90), 3),
        "p99_ms": round(p99, 3),
        "min_ms": round(min(total), 3),
        "max_ms": round(max(total), 3),
        "mean_ms": round(statistics.fmean(total), 3),
        "station_p50_ms": round(statistics.median(own), 3),
        "station_p99_ms": round(percentile(own, 99), 3),
        "station_max_ms": round(max(own), 3),
        "meets_target": p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS,
    }


def print_table(runs: list[dict[str, Any]]) -> None:
    print(f"{FIGURE} (warm-up 0, {runs[0]['alerts']} alerts per row)")
    head = f"{'broker':34}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}  {'station p50/p99/max':>20}  target"
    print(head)
    for r in runs:
        own = f"{r['station_p50_ms']:.2f}/{r['station_p99_ms']:.2f}/{r['station_max_ms']:.2f}"
        verdict = "met" if r["meets_target"] else "MISSED"
        print(
            f"{r['broker']:34}{r['p50_ms']:8.2f}{r['p90_ms']:8.2f}{r['p99_ms']:8.2f}"
            f"{r['max_ms']:8.2f}  {own:>20}  {verdict}"
        )
    print(f"(ms; target p50 <= {TARGET_P50_MS:g}, p99 <= {TARGET_P99_MS:g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    runs = [
        summary(name, measure(args.alerts, nodelay))
        for name, nodelay in (
            ("mosquitto defaults", False),
            ("mosquitto set_tcp_nodelay true", True),
        )
    ]
    print_table(runs)
    result = {
        "figure": FIGURE,
        "conditions": CONDITIONS,
        "target_p50_ms": TARGET_P50_MS,
        "target_p99_ms": TARGET_P99_MS,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
