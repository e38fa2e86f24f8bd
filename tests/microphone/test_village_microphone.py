"""The village microphone in a running station (docs/protocol.md §11), button to loudspeaker.

The station runs in this process (`StationThread`) so that the push-to-talk button can
be a gpiozero MockFactory pin; its PyAudio records from an ALSA device that reads a
prepared file (docs/testing.md "A microphone that reads a file") and plays into the ALSA
file capture; alerts still come signed through a private Mosquitto, and receipts and
events are what the centre's subscriber gets.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import struct
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from gpiozero.pins.mock import MockFactory

from gateway.config.loader import load_config
from gateway.downlink.envelope import seal
from harness.alsa_capture import AlsaCapture, alsa_capture
from harness.mosquitto import Mosquitto, Subscriber
from harness.sounds import RATE, occurrences, sine_pcm, write_clip
from harness.station import (
    STATION_ID,
    Centre,
    StationThread,
    payloads,
    topic,
    wait_until,
    write_config,
)
from tests.e2e.conftest import BEEP

PTT_PIN = 22
ALARM = sine_pcm(1500, 1.0, amplitude=0.6)
#: The issue's figures: microphone to loudspeaker, and how soon an alert silences it.
MAX_LATENCY_S = 0.100
PREEMPT_LIMIT_S = 0.2


def noise(seconds: float, seed: int = 7) -> bytes:
    """Speech-like noise that never repeats and has no zero sample: any 0.1 s is unique."""
    rng = random.Random(seed)
    count = round(seconds * RATE)
    return struct.pack(
        f"<{count}h", *(rng.choice((-1, 1)) * rng.randint(500, 9000) for _ in range(count))
    )


MIC = noise(30.0)


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.reset()


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[AlsaCapture]:
    mic_file = tmp_path / "mic.raw"
    mic_file.write_bytes(MIC)
    with alsa_capture(tmp_path / "alsa", mic=mic_file) as cap:
        yield cap


class Station:
    """The in-process station, its broker and the centre's subscriber."""

    def __init__(self, tmp_path: Path, pins: MockFactory, microphone: str) -> None:
        self.broker = Mosquitto()
        self.broker.start()
        self.centre = Centre()
        body = f"\n[microphone]\n{microphone}\nptt_pin = {PTT_PIN}\n"
        path = write_config(tmp_path, self.broker.port, self.centre, body=body)
        write_clip(tmp_path / "clips", BEEP, sine_pcm(1000, 0.15))
        write_clip(tmp_path / "clips", "alarm", ALARM)
        self.sub = Subscriber(self.broker.port, [f"cx/v1/station/{STATION_ID}/#"])
        self.runner = StationThread(load_config(path), pin_factory=pins)
        self.station = self.runner.start()
        self.button = pins.pin(PTT_PIN)
        self.folder = tmp_path
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.runner.stop()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.sub.close()
            self.broker.close()

    def receipts(self, prefix: str) -> list[dict[str, Any]]:
        messages = self.sub.on(topic("station", STATION_ID, "receipt"))
        return [r for r in payloads(messages) if str(r["alert"]).startswith(prefix)]

    def wait_receipt(self, prefix: str, status: str, count: int = 1) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            matching = [r for r in self.receipts(prefix) if r["status"] == status]
            return matching[count - 1] if len(matching) >= count else None

        return wait_until(found, 15, f"receipt {status} #{count} for {prefix}")  # type: ignore[no-any-return]

    def events(self, type_: str) -> list[dict[str, Any]]:
        messages = self.sub.on(topic("station", STATION_ID, "event"))
        return [e for e in payloads(messages) if e["type"] == type_]

    def send_alert(self, **fields: Any) -> str:
        alert = self.centre.alert(**fields)
        info = self.sub.client.publish(
            topic("alert", "371581001"), self.centre.seal_alert(alert), qos=1
        )
        info.wait_for_publish(5)
        return alert.id


@pytest.fixture
def station(tmp_path: Path, pins: MockFactory, capture: AlsaCapture) -> Iterator[Station]:
    rig = Station(tmp_path, pins, 'device = "default"\nrecord = true')
    yield rig
    rig.close()


def longest_mic_run(audio: bytes) -> int:
    """Bytes of the longest stretch of the capture that is, sample for sample, in the mic file."""
    step = 2 * round(0.02 * RATE)
    best = 0
    index = 0
    while index + step <= len(audio):
        at = MIC.find(audio[index : index + step])
        if at < 0 or at % 2:
            index += 2
            continue
        length = step
        while (
            index + length < len(audio)
            and at + length < len(MIC)
            and audio[index + length] == MIC[at + length]
        ):
            length += 1
        best = max(best, length)
        index += max(length, 2)
    return best


def test_held_button_plays_the_microphone_live_an_alert_cuts_it_off_release_ends_it(
    station: Station, capture: AlsaCapture
) -> None:
    # A bouncing press: three edges within 10 ms are one press, one use of the microphone.
    for edge in (station.button.drive_low, station.button.drive_high, station.button.drive_low):
        edge()
        time.sleep(0.003)
    playing = station.wait_receipt("mic:", "playing")
    mic_id = playing["alert"]
    talk = wait_until(lambda: station.station.parts.microphone.talk, 5, "the microphone in use")
    time.sleep(1.5)

    alert_id = station.send_alert(clip="alarm", level="red", repeat=1)
    received = station.wait_receipt(alert_id, "received")
    station.wait_receipt(mic_id, "interrupted")
    station.wait_receipt(alert_id, "played")
    station.wait_receipt(mic_id, "playing", count=2)  # still held: back on air after the alert
    time.sleep(0.5)
    latencies = list(talk.latencies_s)
    station.button.drive_high()
    station.wait_receipt(mic_id, "played")
    event = wait_until(lambda: station.events("microphone"), 5, "the microphone event")[0]

    statuses = [r["status"] for r in station.receipts(mic_id)]
    assert statuses == ["queued", "playing", "interrupted", "playing", "played"], statuses
    assert len({r["alert"] for r in station.receipts("mic:")}) == 1, "the bounce made two uses"
    assert event["started_ts"] <= playing["ts"]
    assert 2.0 <= event["duration_s"] <= 30.0
    assert event["max_latency_ms"] <= MAX_LATENCY_S * 1000

    # The measured latency: from a chunk read to the next chunk asked for (after its write).
    assert len(latencies) > 50
    print(
        f"\nmicrophone latency over {len(latencies)} chunks: max {max(latencies) * 1000:.1f} ms, "
        f"mean {sum(latencies) / len(latencies) * 1000:.1f} ms"
    )
    assert max(latencies) < MAX_LATENCY_S

    station.stop()  # the capture's tail is written when the stream closes
    audio = capture.raw()
    # The loudspeakers got the microphone's own samples, in order, not a resampled copy.
    assert longest_mic_run(audio) >= 2 * RATE * 1.0, (
        "no second of the microphone reached the output"
    )
    # And the alert cut it off within 200 ms of arriving.
    alarm_at = occurrences(audio, ALARM[: 2 * RATE // 10])[0]
    mic_start = next(i for i in range(0, len(audio), 2) if audio[i : i + 2] != b"\x00\x00")
    sounded_s = (alarm_at - mic_start) / (2 * RATE)
    heard_after = sounded_s - (received["ts"] - playing["ts"]) / 1000
    print(f"microphone heard {heard_after * 1000:.0f} ms after the alert arrived")
    assert heard_after <= PREEMPT_LIMIT_S, (
        f"the microphone went on {heard_after:.3f} s after the alert"
    )

    recordings = list((station.folder / "microphone").glob("*.wav"))
    assert len(recordings) == 1
    with wave.open(str(recordings[0]), "rb") as wav:
        kept = wav.readframes(wav.getnframes())
    assert kept[: 2 * RATE] in MIC, "the recording is not what the microphone heard"


def test_a_missing_input_device_is_a_clear_fault_and_alerts_still_play(
    tmp_path: Path, pins: MockFactory, capture: AlsaCapture
) -> None:
    rig = Station(tmp_path, pins, 'device = "USB Audio Device"')
    try:
        faults = wait_until(lambda: rig.events("broadcast_fault"), 10, "a broadcast_fault")
        assert "microphone" in faults[0]["reason"] and "USB Audio Device" in faults[0]["reason"]
        rig.button.drive_low()
        time.sleep(0.5)
        rig.button.drive_high()
        alert_id = rig.send_alert(clip=BEEP, level="blue", repeat=1)
        rig.wait_receipt(alert_id, "played")
        assert not rig.receipts("mic:")
    finally:
        rig.close()


def test_the_microphone_preempts_a_programme_item_which_plays_again_after(
    station: Station,
) -> None:
    write_clip(station.folder / "clips", "talk", sine_pcm(523, 3.0, amplitude=0.25))
    when = dt.datetime.now(ZoneInfo("Asia/Shanghai")).replace(microsecond=0) + dt.timedelta(
        seconds=4
    )
    body = {
        "id": "sched-mic",
        "version": 1,
        "sent": dt.datetime.now(dt.UTC).isoformat(),
        "areas": ["371581001"],
        "items": [{"name": "talk", "at": f"{when:%H:%M:%S}", "clip": "talk", "tone": "none"}],
    }
    raw = seal(json.dumps(body).encode(), "programme", station.centre.name, station.centre.key)
    station.sub.client.publish(topic("programme", "371581001"), raw, qos=1, retain=True)
    item = f"prog:sched-mic:talk:{when.date().isoformat()}"
    station.wait_receipt(item, "playing")
    station.button.drive_low()
    mic_id = station.wait_receipt("mic:", "playing")["alert"]
    station.wait_receipt(item, "interrupted")
    time.sleep(1.0)
    station.button.drive_high()
    station.wait_receipt(mic_id, "played")
    station.wait_receipt(item, "played")
    assert [r["status"] for r in station.receipts(item)] == [
        "queued",
        "playing",
        "interrupted",
        "playing",
        "played",
    ]
