"""A running station for end-to-end tests, seen the way the centre and the villagers see it.

docs/protocol.md §6–§9 is a promise about what is observable from outside: what the
centre receives on `cx/v1/station/<id>/#` and what reaches the loudspeakers. So
these tests run the real `cunxiang run` in a subprocess (harness/station.py)
against a private Mosquitto, with real PyAudio writing into an ALSA `file` PCM,
and assert only on the receipts, events and command responses a subscriber gets
and on the samples the amplifier would have been given.

A `Rig` is one such station with its broker, the centre's signing key, the
centre's subscriber and the capture. Test modules start one per module
(`running_station`) and leave it idle after each test, so the suite stays fast.
A test takes a `mark()` first and then looks only at what came after it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.downlink.alert_model import Alert, alert_to_json
from gateway.downlink.envelope import seal
from harness.alsa_capture import AlsaCapture, read_samples, write_alsa_config
from harness.mosquitto import Mosquitto, Subscriber
from harness.sounds import sine_pcm, write_clip
from harness.station import (
    AREA,
    STATION_ID,
    Centre,
    StationProcess,
    station_topic,
    topic,
    wait_until,
    write_config,
)

TOWN_TOPIC = topic("alert", AREA[:9])
STATION_ALERT_TOPIC = station_topic("alert")
CMD_TOPIC = station_topic("cmd")
RECEIPT_TOPIC = station_topic("receipt")
EVENT_TOPIC = station_topic("event")
RESPONSE_TOPIC = station_topic("cmd/res")
STATE_TOPIC = station_topic("state")
#: A short clip every rig has: 0.15 s of 1 kHz.
BEEP = "beep"


@dataclass(frozen=True)
class Mark:
    """A point in a test: how many messages the centre had, how many bytes the capture held."""

    messages: int
    audio_bytes: int


class Rig:
    """One running station, its broker, the centre's key and subscriber, and the capture."""

    def __init__(
        self, folder: Path, broker: Mosquitto, centre: Centre, capture: AlsaCapture
    ) -> None:
        self.folder = folder
        self.broker = broker
        self.centre = centre
        self.capture = capture
        self.config = folder / "gateway.toml"
        self.sub = Subscriber(broker.port, [f"cx/v1/station/{STATION_ID}/#"])
        self.station = StationProcess(self.config, env=capture.env())

    # -- life cycle ----------------------------------------------------------------------

    def start(self, capture: AlsaCapture | None = None) -> None:
        """Start `cunxiang run` (optionally capturing into a new file) and wait until it listens."""
        if capture is not None:
            self.capture = capture
            self.station = StationProcess(self.config, env=capture.env())
        self.station.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.station.running(), f"the station exited:\n{self.station.log()[-3000:]}"
            with contextlib.suppress(AssertionError):
                self.command("status", timeout=1.0)
                return
        raise AssertionError(f"the station never answered:\n{self.station.log()[-3000:]}")

    def close(self) -> None:
        self.station.close()
        self.sub.close()

    # -- what the centre sends -----------------------------------------------------------

    def publish(self, topic_: str, payload: bytes) -> float:
        """Publish at QoS 1 and wait for the broker's PUBACK; returns time.monotonic() before."""
        started = time.monotonic()
        info = self.sub.client.publish(topic_, payload, qos=1)
        info.wait_for_publish(5)
        return started

    def alert(self, **fields: Any) -> Alert:
        """A JSON alert for the station's town (see Centre.alert), with the beep clip by default."""
        fields.setdefault("clip", BEEP)
        return self.centre.alert(**fields)

    def send(self, alert: Alert, *, topic_: str = TOWN_TOPIC, cap: bool = False) -> bytes:
        """Seal and publish an alert; returns the raw message."""
        raw = self.centre.seal_alert(alert, cap=cap)
        self.publish(topic_, raw)
        return raw

    def sealed_fields(self, fields: dict[str, Any], type_: str = "alert") -> bytes:
        """Any JSON object, signed by the trusted key (a centre sending something wrong)."""
        return seal(
            json.dumps(fields, ensure_ascii=False).encode(),
            type_,
            self.centre.name,
            self.centre.key,
        )

    def alert_fields(self, **fields: Any) -> dict[str, Any]:
        """The §6.1 JSON of a valid alert, as a dict to spoil."""
        data: dict[str, Any] = json.loads(alert_to_json(self.alert()))
        data.update(fields)
        return data

    # -- what the centre sees ------------------------------------------------------------

    def mark(self) -> Mark:
        return Mark(len(self.sub.messages), len(self.capture.raw()))

    def on(self, topic_: str, since: Mark | None = None) -> list[dict[str, Any]]:
        """New payloads on `topic_` after `since`, as the centre sees them: de-duplicated on seq.

        The station may publish a record again (a `resend`, or records sent just before a
        crash whose acknowledgement was not yet saved); the centre keeps the first copy.
        """
        messages = self.sub.messages[:]  # a snapshot; paho's thread appends meanwhile
        first = since.messages if since else 0
        seen: set[int] = set()
        out = []
        for index, message in enumerate(messages):
            if message.topic != topic_:
                continue
            payload = json.loads(message.payload)
            seq = payload.get("seq") if isinstance(payload, dict) else None
            if seq is not None:
                if seq in seen:
                    continue
                seen.add(seq)
            if index >= first:
                out.append(payload)
        return out

    def receipts(self, alert_id: str, since: Mark | None = None) -> list[dict[str, Any]]:
        return [r for r in self.on(RECEIPT_TOPIC, since) if r["alert"] == alert_id]

    def statuses(self, alert_id: str, since: Mark | None = None) -> list[str]:
        return [r["status"] for r in self.receipts(alert_id, since)]

    def wait_status(
        self, alert_id: str, status: str, timeout: float = 10.0, count: int = 1
    ) -> dict[str, Any]:
        """The `count`-th receipt with `status` for `alert_id`, waiting for it."""

        def found() -> dict[str, Any] | None:
            matching = [r for r in self.receipts(alert_id) if r["status"] == status]
            return matching[count - 1] if len(matching) >= count else None

        return wait_until(found, timeout, f"receipt {status!r} #{count} for {alert_id}")  # type: ignore[no-any-return]

    def events(self, type_: str, since: Mark | None = None) -> list[dict[str, Any]]:
        return [e for e in self.on(EVENT_TOPIC, since) if e["type"] == type_]

    def responses(self, command_id: str) -> list[dict[str, Any]]:
        return [r for r in self.on(RESPONSE_TOPIC) if r.get("id") == command_id]

    def command(
        self,
        cmd: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float = 10.0,
        **fields: Any,
    ) -> dict[str, Any]:
        """Send a signed command and return its response."""
        raw = self.centre.seal_command(cmd, args, **fields)
        command_id = json.loads(_payload_of(raw))["id"]
        self.publish(CMD_TOPIC, raw)
        return wait_until(  # type: ignore[no-any-return]
            lambda: next(iter(self.responses(command_id)), None),
            timeout,
            f"a response to {cmd} {command_id}",
        )

    def barrier(self) -> dict[str, Any]:
        """A `status` round trip: every message published before it has been handled."""
        response = self.command("status")
        assert response["ok"], response
        return response["result"]  # type: ignore[no-any-return]

    def settle(self, quiet_s: float = 0.3, timeout: float = 30.0) -> None:
        """Wait until the capture has stopped growing for `quiet_s` (the tail is written)."""
        last, since = -1, time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            size = len(self.capture.raw())
            if size != last:
                last, since = size, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.02)
        raise AssertionError(f"the capture still grows after {timeout} s")

    def audio_since(self, mark: Mark) -> bytes:
        """The raw 16-bit samples written to the loudspeakers after `mark`."""
        return self.capture.raw()[mark.audio_bytes :]

    def silent_since(self, mark: Mark) -> bool:
        return not any(read_samples(self.audio_since(mark)))

    def log(self) -> str:
        return self.station.log()


def _payload_of(raw: bytes) -> bytes:
    return base64.b64decode(json.loads(raw)["payload"])


@contextlib.contextmanager
def running_station(
    folder: Path,
    *,
    body: str = "",
    audio: str = "",
    security: str = "",
    clips: dict[str, bytes] | None = None,
    clock: str = "synced",
    keys: dict[str, str] | None = None,
    mqtt: str = "",
) -> Iterator[Rig]:
    """A broker and `cunxiang run` on a fresh config in `folder`, with the beep clip and `clips`."""
    folder.mkdir(parents=True, exist_ok=True)
    with Mosquitto() as broker:
        centre = Centre()
        write_config(
            folder,
            broker.port,
            centre,
            body=body,
            audio=audio,
            clock=clock,
            mqtt=mqtt,
            security=security or "max_payload_bytes = 65536",
            keys=keys,
        )
        for name, pcm in {BEEP: sine_pcm(1000, 0.15), **(clips or {})}.items():
            write_clip(folder / "clips", name, pcm)
        rig = Rig(folder, broker, centre, write_alsa_config(folder / "alsa"))
        try:
            rig.start()
            yield rig
        finally:
            rig.close()
