"""`cunxiang alert send` end to end through a private Mosquitto, with fake stations answering."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner, Result
from paho.mqtt.enums import CallbackAPIVersion

from gateway.centre.alerts import receipts_by_station, render_table
from gateway.cli.centre import alert as alert_group
from gateway.cli.centre import keygen
from gateway.downlink.alert_model import Alert, is_for_station, parse_alert_json
from gateway.downlink.cap import parse_cap
from gateway.downlink.envelope import EnvelopeError, open_envelope
from gateway.downlink.keys import decode_public_key
from harness.mosquitto import Mosquitto, Subscriber

PREFIX = "cx/v1"
Responder = Callable[[Alert], list[dict[str, Any]]]


def plays(alert: Alert) -> list[dict[str, Any]]:
    statuses = ["received", "queued", "playing"]
    return [{"status": s} for s in statuses] + [{"status": "played", "duration_s": 12.5}]


class FakeStation:
    """Stands in for a station: verifies, area-matches and answers with canned receipts."""

    def __init__(
        self, port: int, station_id: str, area: str, trusted: dict[str, bytes], respond: Responder
    ) -> None:
        self.id, self.area, self.trusted, self.respond = station_id, area, trusted, respond
        self.seen: list[Alert] = []
        self.seq = 0
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cx-{station_id}")
        self.client.on_connect = lambda c, *_: c.subscribe(
            [(f"{PREFIX}/alert/#", 1), (f"{PREFIX}/station/{station_id}/alert", 1)]
        )
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(5)

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            envelope = open_envelope(bytes(msg.payload), self.trusted, 4 * 1024 * 1024)
        except EnvelopeError:
            return
        parse = parse_cap if envelope.type == "cap" else parse_alert_json
        alert = parse(envelope.payload)
        direct = msg.topic.endswith(f"/station/{self.id}/alert")
        if not is_for_station(alert, self.area) and not direct:
            return
        self.seen.append(alert)
        for receipt in self.respond(alert):
            self.seq += 1
            body = {"seq": self.seq, "ts": 0, "alert": alert.id, **receipt}
            client.publish(f"{PREFIX}/station/{self.id}/receipt", json.dumps(body), qos=1)
            if self.seq == 1:  # a QoS 1 redelivery the centre must count once
                client.publish(f"{PREFIX}/station/{self.id}/receipt", json.dumps(body), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    result = CliRunner().invoke(keygen, ["--name", "county", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    trusted = {"county": decode_public_key((tmp_path / "county.pub").read_text())}
    return tmp_path / "county.key", trusted


@pytest.fixture
def stations(
    broker: Mosquitto, keys: tuple[Path, dict[str, bytes]]
) -> Iterator[dict[str, FakeStation]]:
    trusted = keys[1]

    def refuses(alert: Alert) -> list[dict[str, Any]]:
        return [{"status": "received"}, {"status": "rejected", "reason": "tts_unavailable"}]

    made = {
        "lq-371581001201-01": FakeStation(
            broker.port, "lq-371581001201-01", "371581001201", trusted, plays
        ),
        "lq-371581001202-01": FakeStation(
            broker.port, "lq-371581001202-01", "371581001202", trusted, refuses
        ),
        "lq-371581002001-01": FakeStation(
            broker.port, "lq-371581002001-01", "371581002001", trusted, plays
        ),
    }
    yield made
    for station in made.values():
        station.close()


def send(broker: Mosquitto, key_file: Path, *extra: str, wait: str = "1.0") -> Result:
    args = [
        "send",
        "--broker",
        f"127.0.0.1:{broker.port}",
        "--key",
        str(key_file),
        "--key-name",
        "county",
        "--level",
        "red",
        "--event",
        "flood",
        "--text",
        "卫运河水位超过警戒线，请沿河群众立即向高处转移。",
        "--wait",
        wait,
        *extra,
    ]
    return CliRunner().invoke(alert_group, args)


def table_row(output: str, station: str) -> str:
    rows = [line for line in output.splitlines() if line.startswith(station)]
    assert len(rows) == 1, output
    return rows[0]


def test_json_alert_reaches_the_area_topic_and_receipts_are_tabled(
    broker: Mosquitto, keys: tuple[Path, dict[str, bytes]], stations: dict[str, FakeStation]
) -> None:
    key_file, trusted = keys
    watcher = Subscriber(broker.port, [f"{PREFIX}/alert/#"])
    try:
        result = send(broker, key_file, "--area", "371581001", "--repeat", "2", "--id", "a-0001")
        assert result.exit_code == 0, result.output
        message = watcher.wait_for(lambda m: True)
    finally:
        watcher.close()
    assert message.topic == f"{PREFIX}/alert/371581001" and message.qos == 1
    envelope = open_envelope(message.payload, trusted, 4 * 1024 * 1024)
    alert = parse_alert_json(envelope.payload)
    assert (envelope.type, alert.id, alert.level, alert.repeat) == ("alert", "a-0001", "red", 2)
    assert alert.areas == ["371581001"] and alert.text.startswith("卫运河")

    assert f"published a-0001 (json) on {PREFIX}/alert/371581001" in result.output
    played = table_row(result.output, "lq-371581001201-01").split()
    assert played[1:4] == ["yes", "yes", "(12.5"]
    refused = table_row(result.output, "lq-371581001202-01").split()
    assert refused[1:] == ["yes", "no", "rejected", "(tts_unavailable)"]
    assert "lq-371581002001-01" not in result.output  # another town: not for it
    assert "2 station(s) answered, 1 played" in result.output
    assert stations["lq-371581002001-01"].seen == []


def test_cap_alert_to_one_station(
    broker: Mosquitto, keys: tuple[Path, dict[str, bytes]], stations: dict[str, FakeStation]
) -> None:
    key_file, trusted = keys
    watcher = Subscriber(broker.port, [f"{PREFIX}/#"])
    try:
        result = send(
            broker, key_file, "--cap", "--area", "371581001201", "--station", "lq-371581001201-01"
        )
        assert result.exit_code == 0, result.output
        message = watcher.wait_for(lambda m: m.topic.endswith("/alert"))
    finally:
        watcher.close()
    assert message.topic == f"{PREFIX}/station/lq-371581001201-01/alert"
    envelope = open_envelope(message.payload, trusted, 4 * 1024 * 1024)
    assert envelope.type == "cap"
    alert = parse_cap(envelope.payload)
    assert (alert.level, alert.event, alert.areas) == ("red", "flood", ["371581001201"])
    assert (alert.repeat, alert.tone) == (None, None)  # CAP: the station's defaults
    assert alert.stations == ["lq-371581001201-01"]  # <scope>Private</scope> + <addresses>
    assert table_row(result.output, "lq-371581001201-01").split()[1:3] == ["yes", "yes"]
    assert [s.seen for s in stations.values()][1:] == [[], []]


def test_all_areas_with_another_prefix_and_a_cancel(
    broker: Mosquitto, keys: tuple[Path, dict[str, bytes]]
) -> None:
    key_file, trusted = keys
    watcher = Subscriber(broker.port, ["county/v1/#"])
    try:
        result = send(
            broker,
            key_file,
            "--area",
            "all",
            "--topic-prefix",
            "county/v1",
            "--msg-type",
            "cancel",
            "--references",
            "a-0001,a-0002",
            "--status",
            "exercise",
            wait="0",
        )
        assert result.exit_code == 0, result.output
        message = watcher.wait_for(lambda m: True)
    finally:
        watcher.close()
    assert message.topic == "county/v1/alert/all"
    alert = parse_alert_json(open_envelope(message.payload, trusted, 1 << 20).payload)
    assert (alert.msg_type, alert.references, alert.status) == (
        "cancel",
        ["a-0001", "a-0002"],
        "exercise",
    )
    assert "no receipts" in result.output


def test_unreachable_broker_is_a_clear_error(
    keys: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    broker = Mosquitto()  # never started: nothing listens on its port
    result = send(broker, keys[0], "--area", "371581")
    assert result.exit_code == 1
    assert f"cannot connect to broker 127.0.0.1:{broker.port}" in result.output
    broker.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--area", "37158"], "2/4/6/9/12-digit"),
        (["--area", "371581", "--msg-type", "update"], "needs references"),
        (["--area", "371581", "--clip", "../../etc/passwd"], "clip name"),
        (["--area", "371581", "--cap", "--repeat", "2"], "no CAP form"),
        (["--area", "371581", "--broker", "127.0.0.1:99999"], "expected HOST:PORT"),
    ],
)
def test_bad_requests_are_refused_before_publishing(
    broker: Mosquitto, keys: tuple[Path, dict[str, bytes]], extra: list[str], message: str
) -> None:
    watcher = Subscriber(broker.port, ["#"])
    try:
        result = send(broker, keys[0], *extra, wait="0")
    finally:
        watcher.close()
    assert result.exit_code in (1, 2) and message in result.output, result.output
    assert watcher.messages == []


def test_missing_key_file_is_a_clear_error(broker: Mosquitto, tmp_path: Path) -> None:
    result = send(broker, tmp_path / "nope.key", "--area", "371581", wait="0")
    assert result.exit_code == 1 and "nope.key" in result.output


def test_receipts_table_counts_redeliveries_once_and_notes_silent_and_unsynced() -> None:
    receipts = [
        ("cx/v1/station/s1/receipt", {"seq": 1, "alert": "A", "status": "received"}),
        ("cx/v1/station/s1/receipt", {"seq": 1, "alert": "A", "status": "received"}),
        ("cx/v1/station/s1/receipt", {"seq": 2, "alert": "A", "status": "interrupted"}),
        ("cx/v1/station/s1/receipt", {"seq": 3, "alert": "A", "status": "played", "silent": True}),
        (
            "cx/v1/station/s2/receipt",
            {"seq": 7, "alert": "A", "status": "expired", "clock_unsynced": True},
        ),
        ("cx/v1/station/s3/receipt", {"seq": 1, "alert": "B", "status": "received"}),
        ("cx/v1/station/s4/receipt", "not json"),
        ("cx/v1/station/s5/event", {"seq": 1, "alert": "A", "status": "received"}),
    ]
    messages = [
        (topic, body.encode() if isinstance(body, str) else json.dumps(body).encode())
        for topic, body in receipts
    ]
    stations = receipts_by_station(messages, "cx/v1", "A")
    assert sorted(stations) == ["s1", "s2"]
    assert stations["s1"].statuses() == ["received", "interrupted", "played"]
    table = render_table(stations)
    assert "yes (silent)" in table and "interrupted" in table
    assert "expired, clock_unsynced" in table
