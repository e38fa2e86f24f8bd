"""The county centre's ledger: every record a station published, counted by seq as the centre sees it.

Why this module exists: what the fault suite, the box tests and the benchmarks count is what
the county centre would count: records lost after their commit (a seq the station committed
that never arrived), duplicates (a seq that arrived more than once — harmless, the centre
de-duplicates on it), and conflicts (one seq carrying two different records — a reused seq,
which would be a real bug). `Ledger` is a persistent-session paho subscriber
(`clean_session=False`) to one station's uplink topics that keeps all of that, sends signed
commands through the same connection (the centre's `resend` repairs the gaps a crashed broker
leaves), and reconnects within tens of milliseconds by itself when the broker is killed or
restarted; its session keeps what the broker received for it meanwhile.

Seqs are counted in a bytearray, so a drain of a million readings costs the centre little:
with ``keep_readings=False`` a reading is only counted, not kept or compared (a benchmark
whose figure is the drain rate); with `expected` it notes when seqs 1..expected were all in
(`completed_at`).

It connects over TCP (`host`, `port`) or, for a broker in another network namespace, over the
broker's unix socket (`unix_path`): a unix socket is a file, so it crosses namespaces.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from harness.mosquitto import HOST
from harness.station import PREFIX, STATION_ID, Centre

#: What a station publishes (docs/protocol.md §2); its downlink topics (alert, cmd) are not followed.
UPLINK_KINDS = ("state", "telemetry", "event", "receipt", "cmd/res")
#: The kinds that carry records, each with its seq.
RECORD_KINDS = ("telemetry", "event", "receipt")


def ranges_of(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted inclusive (first, last) runs of a set of ints."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


class Ledger:
    """The centre: subscribes to a station's uplink topics with a persistent session and counts it all."""

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = HOST,
        unix_path: str | None = None,
        station_id: str = STATION_ID,
        keep_readings: bool = True,
        expected: int = 0,
        timeout: float = 10.0,
    ) -> None:
        self.station_id = station_id
        self.keep_readings = keep_readings
        self.expected = expected  # seqs 1..expected are a backlog being drained
        self._prefix = f"{PREFIX}/station/{station_id}/"
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        # Every seq, counted.
        self._seen = bytearray(expected + 1)
        self._duplicates = 0
        self._max_seq = 0
        self._max_reading_seq = 0
        self.got_expected = 0  # distinct seqs of 1..expected received
        self.completed_at: float | None = None  # when the last of them arrived
        self.messages = 0  # messages carrying records
        self.telemetry_at: list[tuple[float, int]] = []  # (time.monotonic(), first seq) each
        # What the station said (readings only with keep_readings).
        self.records: dict[int, str] = {}  # seq -> canonical JSON of the first copy
        self.conflicts: list[tuple[int, str, str]] = []
        self.readings: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.event_arrivals: list[float] = []  # monotonic arrival time of each event in `events`
        self.receipts: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.states: list[dict[str, Any]] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"centre-{uuid.uuid4().hex[:10]}",
            clean_session=False,
            transport="unix" if unix_path else "tcp",
        )
        self.client.reconnect_delay_set(min_delay=0.01, max_delay=0.02)  # type: ignore[arg-type]
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        if unix_path:
            self.client.connect(unix_path)  # the port is not used over a unix socket
        else:
            self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise TimeoutError("the centre could not subscribe to the station's topics")

    # -- paho callbacks (network thread) --------------------------------------------------

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(f"{self._prefix}{kind}", 1) for kind in UPLINK_KINDS])

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        kind = msg.topic[len(self._prefix) :] if msg.topic.startswith(self._prefix) else msg.topic
        try:
            body = json.loads(msg.payload)
        except (ValueError, RecursionError):
            body = {"unparsable": msg.payload[:200].decode("utf-8", "replace")}
        with self._cond:
            if kind in RECORD_KINDS:
                self.messages += 1
            if kind == "telemetry":
                self._telemetry(body.get("readings", []), now)
            elif kind in ("event", "receipt"):
                if self._record(body):
                    (self.events if kind == "event" else self.receipts).append(body)
                    if kind == "event":
                        self.event_arrivals.append(now)
            elif kind == "cmd/res":
                self.responses.append(body)
            elif kind == "state":
                self.states.append(body)
            if self.completed_at is None and self.expected and self.got_expected >= self.expected:
                self.completed_at = now
            self._cond.notify_all()

    def _telemetry(self, readings: list[dict[str, Any]], now: float) -> None:
        if readings:
            self.telemetry_at.append((now, int(readings[0]["seq"])))
        for reading in readings:
            seq = int(reading["seq"])
            if seq > self._max_reading_seq:
                self._max_reading_seq = seq
            if self.keep_readings:
                self._record(reading)
                self.readings.setdefault(seq, reading)
            else:
                self._count(seq)

    def _count(self, seq: int) -> bool:
        """Count one delivery of `seq`; True if it is the first."""
        seen = self._seen
        if seq >= len(seen):
            seen.extend(bytes(seq - len(seen) + 65536))
        if seq > self._max_seq:
            self._max_seq = seq
        if seen[seq]:
            self._duplicates += 1
            return False
        seen[seq] = 1
        if seq <= self.expected:
            self.got_expected += 1
        return True

    def _record(self, body: dict[str, Any]) -> bool:
        """Count one record and compare it with the first copy of its seq; True if it is the first."""
        seq = int(body["seq"])
        text = json.dumps(body, sort_keys=True)
        first = self.records.setdefault(seq, text)
        if first != text:
            self.conflicts.append((seq, first, text))
        return self._count(seq)

    # -- what the centre knows ------------------------------------------------------------

    def max_seq(self) -> int:
        with self._cond:
            return self._max_seq

    def max_reading_seq(self) -> int:
        """The highest seq of a reading (telemetry goes out in seq order; events jump ahead)."""
        with self._cond:
            return self._max_reading_seq

    def missing(self, upto: int) -> list[int]:
        """Seqs 1..upto that never arrived."""
        with self._cond:
            seen = self._seen
            if upto >= len(seen):
                seen.extend(bytes(upto - len(seen) + 1))
            found = []
            seq = seen.find(0, 1, upto + 1)
            while seq != -1:
                found.append(seq)
                seq = seen.find(0, seq + 1, upto + 1)
            return found

    def duplicates(self) -> int:
        """Deliveries beyond the first of each seq."""
        with self._cond:
            return self._duplicates

    def first_arrival(self, type_: str, **fields: Any) -> float | None:
        """When the first event of `type_` with these field values arrived (monotonic), or None."""
        with self._cond:
            for event, at in zip(self.events, self.event_arrivals, strict=True):
                if event.get("type") == type_ and all(event.get(k) == v for k, v in fields.items()):
                    return at
        return None

    def first_telemetry_after(self, t: float, timeout: float) -> float | None:
        """The arrival time of the first telemetry message received after monotonic time `t`."""

        def after() -> float | None:
            with self._cond:
                first = None
                for at, _ in reversed(self.telemetry_at):
                    if at <= t:
                        break
                    first = at
                return first

        with contextlib.suppress(AssertionError):
            return float(self.wait(after, timeout, "telemetry"))
        return None

    def events_of(self, type_: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e.get("type") == type_]

    def receipts_for(self, alert_id: str) -> list[dict[str, Any]]:
        with self._cond:
            return [r for r in self.receipts if r.get("alert") == alert_id]

    def statuses(self, alert_id: str) -> list[str]:
        return [str(r["status"]) for r in self.receipts_for(alert_id)]

    def readings_of(self, sensor: str) -> list[dict[str, Any]]:
        with self._cond:
            return [r for r in self.readings.values() if r.get("sensor") == sensor]

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait until `predicate()` is truthy (it may call the methods above); AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the centre did not see {what} within {timeout} s")
            with self._cond:
                self._cond.wait(min(remaining, 0.1))

    def wait_complete(self, upto: int, timeout: float) -> None:
        """Wait until every seq 1..upto has arrived."""
        self.wait(
            lambda: self.max_seq() >= upto and not self.missing(upto), timeout, f"seq 1..{upto}"
        )

    # -- what the centre sends ------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK (waiting for a connection first)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.client.is_connected():
                info = self.client.publish(topic, payload, qos=1)
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(max(0.1, deadline - time.monotonic()))
                    if info.is_published():
                        return
            if time.monotonic() > deadline:
                raise AssertionError(f"could not publish on {topic} within {timeout} s")
            time.sleep(0.05)

    def command(
        self, centre: Centre, cmd: str, args: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send a signed command to the station and wait for its response."""
        raw = centre.seal_command(cmd, args, station=self.station_id)
        command_id = json.loads(base64.b64decode(json.loads(raw)["payload"]))["id"]
        self.publish(f"{self._prefix}cmd", raw)

        def answered() -> dict[str, Any] | None:
            with self._cond:
                return next((r for r in self.responses if r.get("id") == command_id), None)

        response: dict[str, Any] = self.wait(answered, timeout, f"a response to {cmd}")
        return response

    def repair(self, centre: Centre, upto: int, timeout: float = 30.0) -> int:
        """Ask for every missing seq in 1..upto with `resend` until none is missing.

        Returns how many seqs were missing before the repair; AssertionError if some stay missing.
        """
        before = len(self.missing(upto))
        deadline = time.monotonic() + timeout
        while missing := self.missing(upto):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(missing)} seqs still missing after resend: {ranges_of(missing)[:5]}"
                )
            for first, last in ranges_of(missing):
                response = self.command(centre, "resend", {"from_seq": first, "to_seq": last})
                assert response.get("ok"), f"resend {first}..{last} failed: {response}"
            with contextlib.suppress(AssertionError):
                self.wait(lambda: not self.missing(upto), 5.0, "resent records")
        return before

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
