"""Commands from the centre (docs/protocol.md §8) answered by the running station.

Each command is signed by the centre's key, published on
`cx/v1/station/<id>/cmd`, and judged by its response on `…/cmd/res` and by what
the loudspeakers and the centre's subscriber show afterwards. A simulated
sensor gives the station readings to report.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from audio.pcm import scale
from audio.tones import render_tone
from harness.sounds import RATE, occurrences, sine_pcm
from harness.station import wait_until
from tests.e2e.conftest import CMD_TOPIC, EVENT_TOPIC, RECEIPT_TOPIC, Rig, running_station

SENSOR = """
[[sensors]]
name = "river"
type = "simulated"
quantity = "water_level_m"
pattern = "steps"
low = 0.5
high = 1.5
interval_s = 0.1
"""
LONG = sine_pcm(440, 2.0, amplitude=0.2)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    folder = tmp_path_factory.mktemp("commands")
    with running_station(folder, body=SENSOR, clips={"long": LONG}) as station:
        yield station


def test_status_replies_with_state_readings_and_queue(rig: Rig) -> None:
    time.sleep(0.3)  # a few readings
    response = rig.command("status")
    assert response["ok"] is True
    result = response["result"]
    assert result["online"] is True
    assert result["area"] == "371581001201"
    assert result["audio"] == "idle"
    assert result["clock_synced"] is True
    assert result["sensors"] == {"river": "ok"}
    assert isinstance(result["boot"], str) and isinstance(result["backlog"], int)
    assert isinstance(result["ts"], int)
    assert result["queue"] == []
    readings = result["last_readings"]
    assert 1 <= len(readings) <= 20
    assert {r["sensor"] for r in readings} == {"river"}
    assert all(r["q"] == "water_level_m" and 0.5 <= r["v"] <= 1.5 for r in readings)


def test_status_shows_the_broadcast_playing_and_cancel_all_stops_it(rig: Rig) -> None:
    mark = rig.mark()
    alert = rig.alert(clip="long", level="orange", repeat=1)
    rig.send(alert)
    rig.wait_status(alert.id, "playing")
    status = rig.command("status")["result"]
    assert status["audio"] == "playing"
    assert [(q["id"], q["state"], q["level"]) for q in status["queue"]] == [
        (alert.id, "playing", "orange")
    ]

    response = rig.command("cancel_all")
    assert response == {"id": response["id"], "ok": True, "result": {"cancelled": [alert.id]}}
    rig.wait_status(alert.id, "cancelled")
    rig.settle()
    assert rig.statuses(alert.id, mark) == ["received", "queued", "playing", "cancelled"]
    audio = rig.audio_since(mark)
    assert any(audio) and occurrences(audio, LONG) == []  # stopped before its end
    assert rig.barrier()["queue"] == []


def test_speaker_test_plays_a_chime_at_the_asked_volume(rig: Rig) -> None:
    mark = rig.mark()
    response = rig.command("speaker_test", {"volume": 0.5}, timeout=15)
    assert response["ok"] is True
    assert response["result"]["played"] is True
    rig.settle()
    chime = scale(render_tone("chime", RATE), 0.5)
    assert len(occurrences(rig.audio_since(mark), chime)) == 1
    assert rig.on(RECEIPT_TOPIC, mark) == []  # a speaker test is not an alert


def test_resend_publishes_the_stored_records_again(rig: Rig) -> None:
    def copies(seq: int) -> int:
        count = 0
        for message in rig.sub.messages[:]:
            if message.topic in (RECEIPT_TOPIC, EVENT_TOPIC):
                count += json.loads(message.payload)["seq"] == seq
            elif message.topic.endswith("/telemetry"):
                readings = json.loads(message.payload)["readings"]
                count += sum(r["seq"] == seq for r in readings)
        return count

    assert [copies(seq) for seq in (1, 2, 3)] == [1, 1, 1]
    response = rig.command("resend", {"from_seq": 1, "to_seq": 3})
    assert response["ok"] is True
    assert response["result"] == {"from_seq": 1, "to_seq": 3}
    wait_until(lambda: [copies(s) for s in (1, 2, 3)] == [2, 2, 2], 10, "seq 1-3 sent again")
    started = [e for e in rig.events("started") if e["seq"] == 1]
    assert started and started[0]["type"] == "started"

    gone = rig.command("resend", {"from_seq": 10**9, "to_seq": 10**9 + 5})
    assert gone["ok"] is True and gone["result"] == {"from_seq": None}


@pytest.mark.parametrize(
    ("sent", "expires", "error"),
    [
        # Lifetimes within security.max_command_lifetime_s (600 s, §8 revision 2).
        (timedelta(minutes=-20), timedelta(minutes=-15), "expired"),
        (timedelta(minutes=10), timedelta(minutes=15), "from_future"),
    ],
)
def test_out_of_time_command_is_refused(
    rig: Rig, sent: timedelta, expires: timedelta, error: str
) -> None:
    now = datetime.now(UTC)
    mark = rig.mark()
    response = rig.command(
        "speaker_test", sent=(now + sent).isoformat(), expires=(now + expires).isoformat()
    )
    assert response == {"id": response["id"], "ok": False, "error": error}
    rig.barrier()
    rig.settle()
    assert rig.silent_since(mark)


def test_replayed_command_is_not_answered_again(rig: Rig) -> None:
    raw = rig.centre.seal_command("cancel_all")
    command_id = _command_id(raw)
    rig.publish(CMD_TOPIC, raw)
    rig.barrier()
    rig.publish(CMD_TOPIC, raw)
    rig.barrier()
    time.sleep(0.2)
    assert len(rig.responses(command_id)) == 1


def test_replayed_command_is_not_answered_even_once_expired(rig: Rig) -> None:
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=1)
    raw = rig.centre.seal_command("status", expires=expires.isoformat())
    command_id = _command_id(raw)
    rig.publish(CMD_TOPIC, raw)
    wait_until(lambda: rig.responses(command_id), 10, "the first answer")
    while datetime.now(UTC) <= expires:
        time.sleep(0.05)
    rig.publish(CMD_TOPIC, raw)
    rig.barrier()
    time.sleep(0.2)
    assert [r["ok"] for r in rig.responses(command_id)] == [True]


def test_command_with_bad_arguments_is_answered_bad_payload(rig: Rig) -> None:
    fields: dict[str, Any] = {"args": {"from_seq": 5, "to_seq": 1}}
    response = rig.command("resend", **fields)
    assert response == {"id": response["id"], "ok": False, "error": "bad_payload"}


def _command_id(raw: bytes) -> str:
    return str(json.loads(base64.b64decode(json.loads(raw)["payload"]))["id"])
