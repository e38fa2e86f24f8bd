"""The amplifier relay around a central alert: on before the first sample, off after release.

docs/protocol.md §9: the amplifier (`audio.amp_pin`) is switched on before the first
sound and held `amp_warmup_s` before audio starts; it is switched off
`amp_release_s` after the queue empties. A subprocess cannot share a gpiozero
MockFactory with the test, so here the real `Station` runs in a thread of the
test process (harness/station.py `StationThread`) with a MockFactory; the
alert still comes signed through a private Mosquitto and the sound still goes
through real PyAudio into an ALSA file PCM. The player's `on_first_write` hook
notes the pin's state at the moment the first sound chunk is handed to
`stream.write()`; the pin's own history gives when it went on and off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from gateway.config.loader import load_config
from harness.alsa_capture import AlsaCapture, alsa_capture
from harness.mosquitto import Mosquitto, Subscriber
from harness.sounds import occurrences, sine_pcm, write_clip
from harness.station import (
    STATION_ID,
    Centre,
    StationThread,
    payloads,
    topic,
    wait_until,
    write_config,
)
from tests.e2e.conftest import BEEP, RECEIPT_TOPIC

AMP_PIN = 27
WARMUP_S = 0.3
RELEASE_S = 0.4
SLACK_S = 0.01


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.reset()


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[AlsaCapture]:
    with alsa_capture(tmp_path / "alsa") as cap:
        yield cap


def test_amplifier_is_on_before_the_first_sample_and_off_after_release(
    tmp_path: Path, pins: MockFactory, capture: AlsaCapture
) -> None:
    with Mosquitto() as broker:
        centre = Centre()
        path = write_config(tmp_path, broker.port, centre, audio=f"amp_pin = {AMP_PIN}")
        write_clip(tmp_path / "clips", BEEP, sine_pcm(1000, 0.15))
        loaded = load_config(path)
        audio = loaded.audio.model_copy(
            update={"amp_warmup_s": WARMUP_S, "amp_release_s": RELEASE_S}
        )
        config = loaded.model_copy(update={"audio": audio})
        runner = StationThread(config, pin_factory=pins)
        station = runner.start()
        sub = Subscriber(broker.port, [f"cx/v1/station/{STATION_ID}/#"])
        try:
            pin = pins.pin(AMP_PIN)
            first_writes: list[tuple[float, bool]] = []
            wrote = threading.Event()

            def on_first_write(_queued_s: float) -> None:
                first_writes.append((time.monotonic(), bool(pin.state)))
                wrote.set()

            station.parts.player.on_first_write = on_first_write
            assert pin.state is False  # off while idle
            pin.clear_states()
            cleared_at = time.monotonic()
            alert = centre.alert(clip=BEEP, repeat=1, level="red")
            sub.client.publish(topic("alert", "all"), centre.seal_alert(alert), qos=1)
            sub.wait_for(
                lambda m: m.topic == RECEIPT_TOPIC and b'"played"' in m.payload, timeout=10
            )
            wait_until(lambda: len(pin.states) >= 3, 5, "the amplifier to be switched off")
            heard_until = station.parts.player.audible_until()
            time.sleep(0.1)
            statuses = [
                r["status"] for r in payloads(sub.messages[:]) if r.get("alert") == alert.id
            ]
        finally:
            sub.close()
            runner.stop()

    assert statuses == ["received", "queued", "playing", "played"]
    assert [s.state for s in pin.states] == [False, True, False]
    on_at = cleared_at + pin.states[1].timestamp
    off_at = on_at + pin.states[2].timestamp
    assert wrote.is_set() and len(first_writes) == 1
    first_write_at, pin_at_first_write = first_writes[0]
    assert pin_at_first_write is True
    assert first_write_at - on_at >= WARMUP_S - SLACK_S  # the warm-up was waited out
    assert off_at - heard_until >= RELEASE_S - SLACK_S  # held until the release time ran out
    assert off_at - heard_until < RELEASE_S + 0.5
    assert len(occurrences(capture.raw(), sine_pcm(1000, 0.15))) == 1
