"""Everything that must not play gets exactly what docs/protocol.md §6–§7 prescribe, and silence.

Each test sends one kind of bad downlink at the running station, then a `status`
command as a barrier (downlink is handled in order, so when its answer arrives
the bad message has been dealt with), and checks what the centre got — a
`downlink_rejected` event, a `rejected`/`expired` receipt, or nothing — and
that the loudspeakers got no sound at all.

Envelope failures are rate-limited per reason (§5): the first goes out at once,
further ones of that reason within the minute are folded into one event at the
minute's end. The tests here share one station, so each reason's "at once" event
is used by one test; a later message of the same reason is checked through the
log line §6 also prescribes. The minute itself is covered by the unit tests
(tests/alerts/test_downlink_rejections.py).
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.downlink.alert_model import alert_to_json
from gateway.downlink.cap import build_cap
from gateway.downlink.envelope import seal
from harness.sounds import occurrences, sine_pcm
from harness.station import Centre, topic
from tests.e2e.conftest import (
    BEEP,
    RECEIPT_TOPIC,
    STATION_ALERT_TOPIC,
    TOWN_TOPIC,
    Mark,
    Rig,
    running_station,
)

MAX_PAYLOAD = 65536  # running_station's security.max_payload_bytes


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_station(tmp_path_factory.mktemp("reject")) as station:
        yield station


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def assert_silent_and_no_receipts(rig: Rig, mark: Mark) -> None:
    """After a barrier: no receipt at all since `mark`, no sound, nothing queued."""
    status = rig.barrier()
    assert status["queue"] == []
    assert rig.on(RECEIPT_TOPIC, mark) == []
    rig.settle()
    assert rig.silent_since(mark)


def rejection_logged(rig: Rig, reason: str, raw: bytes) -> bool:
    return f"downlink rejected ({reason})" in rig.log() and sha256(raw) in rig.log()


def assert_envelope_rejected(
    rig: Rig, mark: Mark, raw: bytes, reason: str, topic_: str, key: str | None
) -> None:
    """One `downlink_rejected` event describing `raw`, a log line, no receipt, no sound."""
    assert_silent_and_no_receipts(rig, mark)
    events = rig.events("downlink_rejected", mark)
    assert len(events) == 1, events
    event = events[0]
    assert event["reason"] == reason
    assert event["topic"] == topic_
    assert event["payload_sha256"] == sha256(raw)
    assert event["count"] == 1
    assert event.get("key") == key
    assert isinstance(event["seq"], int) and isinstance(event["ts"], int)
    assert rejection_logged(rig, reason, raw)


# -- envelope failures: a downlink_rejected event, never a receipt --------------------------


def test_forged_signature_is_reported_once_at_once_and_the_rest_folded(rig: Rig) -> None:
    forger = Ed25519PrivateKey.generate()
    mark = rig.mark()
    raws = []
    for _ in range(5):
        alert = rig.alert(level="red")
        raw = seal(alert_to_json(alert), "alert", rig.centre.name, forger)
        raws.append(raw)
        rig.publish(TOWN_TOPIC, raw)
    assert_silent_and_no_receipts(rig, mark)
    time.sleep(0.5)  # room for a wrongly unfolded second event to arrive
    events = rig.events("downlink_rejected", mark)
    assert len(events) == 1, events
    assert events[0]["reason"] == "bad_signature"
    assert events[0]["key"] == rig.centre.name
    assert events[0]["payload_sha256"] == sha256(raws[0])
    assert events[0]["count"] == 1
    assert all(sha256(raw) in rig.log() for raw in raws)


def test_unknown_key_is_reported(rig: Rig) -> None:
    stranger = Centre(name="some-other-bureau")
    mark = rig.mark()
    raw = stranger.seal_alert(rig.alert(level="red"))
    rig.publish(TOWN_TOPIC, raw)
    assert_envelope_rejected(rig, mark, raw, "unknown_key", TOWN_TOPIC, "some-other-bureau")


def test_truncated_base64_is_a_bad_envelope(rig: Rig) -> None:
    envelope = json.loads(rig.centre.seal_alert(rig.alert(level="red")))
    envelope["payload"] = envelope["payload"][:-3]
    raw = json.dumps(envelope).encode()
    mark = rig.mark()
    rig.publish(STATION_ALERT_TOPIC, raw)
    assert_envelope_rejected(rig, mark, raw, "bad_envelope", STATION_ALERT_TOPIC, rig.centre.name)


def test_oversize_payload_is_too_large_and_never_verified(rig: Rig) -> None:
    # Signed by the trusted key: only the size check stands between it and the parser.
    padded = rig.alert_fields(text="", clip=BEEP, sender="x" * (MAX_PAYLOAD + 100))
    raw = rig.sealed_fields(padded)
    mark = rig.mark()
    rig.publish(TOWN_TOPIC, raw)
    assert_envelope_rejected(rig, mark, raw, "too_large", TOWN_TOPIC, rig.centre.name)

    # Far larger than any envelope could be: rejected before decoding (folded into the minute).
    junk = b"{" + b" " * (2 * MAX_PAYLOAD) + b"}"
    mark = rig.mark()
    rig.publish(TOWN_TOPIC, junk)
    assert_silent_and_no_receipts(rig, mark)
    assert rig.events("downlink_rejected", mark) == []
    assert rejection_logged(rig, "too_large", junk)


# -- verified payloads that are wrong: a receipt naming the id and reason --------------------


def test_alert_for_another_area_on_an_area_topic_is_ignored(rig: Rig) -> None:
    mark = rig.mark()
    for area_topic in (TOWN_TOPIC, topic("alert", "all")):
        rig.send(rig.alert(areas=["110101001"], level="red"), topic_=area_topic)
    assert_silent_and_no_receipts(rig, mark)
    assert rig.events("downlink_rejected", mark) == []


def test_alert_for_another_area_on_the_station_topic_is_rejected(rig: Rig) -> None:
    mark = rig.mark()
    alert = rig.alert(areas=["110101001"], level="red")
    rig.send(alert, topic_=STATION_ALERT_TOPIC)
    rig.barrier()
    receipt = rig.wait_status(alert.id, "rejected")
    assert receipt["reason"] == "not_for_this_area"
    assert rig.statuses(alert.id, mark) == ["rejected"]
    rig.settle()
    assert rig.silent_since(mark)


def test_expired_alert_gets_expired(rig: Rig) -> None:
    now = datetime.now(UTC)
    mark = rig.mark()
    alert = rig.alert(sent=now - timedelta(hours=2), expires=now - timedelta(seconds=5))
    rig.send(alert)
    rig.barrier()
    rig.wait_status(alert.id, "expired")
    assert rig.statuses(alert.id, mark) == ["expired"]
    rig.settle()
    assert rig.silent_since(mark)


def test_alert_from_the_future_is_rejected(rig: Rig) -> None:
    now = datetime.now(UTC)
    mark = rig.mark()
    alert = rig.alert(sent=now + timedelta(minutes=10), expires=now + timedelta(hours=1))
    rig.send(alert)
    rig.barrier()
    assert rig.wait_status(alert.id, "rejected")["reason"] == "from_future"
    assert rig.statuses(alert.id, mark) == ["rejected"]
    rig.settle()
    assert rig.silent_since(mark)


def test_replayed_id_gets_no_receipt_and_no_second_play(rig: Rig) -> None:
    mark = rig.mark()
    alert = rig.alert(repeat=1)
    raw = rig.send(alert)
    rig.wait_status(alert.id, "played")
    rig.settle()
    replay_mark = rig.mark()
    rig.publish(TOWN_TOPIC, raw)  # the same message again
    rig.send(rig.centre.alert(id=alert.id, clip=BEEP, level="red", repeat=2))  # same id, new body
    assert_silent_and_no_receipts(rig, replay_mark)
    assert rig.statuses(alert.id, mark) == ["received", "queued", "playing", "played"]
    assert len(occurrences(rig.audio_since(mark), sine_pcm(1000, 0.15))) == 1


def test_replay_after_expiry_gets_no_receipt(rig: Rig) -> None:
    """A repeat delivery gets no new receipt (§6.1) — not even `expired` once it has expired."""
    now = datetime.now(UTC)
    mark = rig.mark()
    alert = rig.alert(repeat=1, expires=now + timedelta(seconds=1.5))
    raw = rig.send(alert)
    rig.wait_status(alert.id, "played")
    while datetime.now(UTC) <= alert.expires:
        time.sleep(0.05)
    replay_mark = rig.mark()
    rig.publish(TOWN_TOPIC, raw)
    assert_silent_and_no_receipts(rig, replay_mark)
    assert rig.statuses(alert.id, mark) == ["received", "queued", "playing", "played"]


@pytest.mark.parametrize(
    ("clip", "reason"),
    [("../../etc/passwd", "unknown_clip"), ("nosuchclip", "unknown_clip")],
)
def test_bad_clip_is_rejected(rig: Rig, clip: str, reason: str) -> None:
    mark = rig.mark()
    fields = rig.alert_fields(clip=clip, level="red")
    rig.publish(TOWN_TOPIC, rig.sealed_fields(fields))
    rig.barrier()
    receipt = rig.wait_status(fields["id"], "rejected")
    assert receipt["reason"] == reason
    assert rig.statuses(fields["id"], mark) == ["rejected"]
    rig.settle()
    assert rig.silent_since(mark)


def test_unsupported_status_is_rejected(rig: Rig) -> None:
    mark = rig.mark()
    fields = rig.alert_fields(status="draft", level="red")
    rig.publish(TOWN_TOPIC, rig.sealed_fields(fields))
    rig.barrier()
    assert rig.wait_status(fields["id"], "rejected")["reason"] == "unsupported_status"
    rig.settle()
    assert rig.silent_since(mark)


# -- hostile XML -------------------------------------------------------------------------------


def _cap_with_doctype(rig: Rig, doctype: str, reference: str) -> bytes:
    """A CAP alert that would play here, with a DOCTYPE and an entity reference in its text."""
    document = build_cap(rig.alert(clip=None, text="placeholder", level="red")).decode()
    document = document.replace("<description>placeholder", f"<description>{reference}")
    head, body = document.split("?>", 1)
    return f"{head}?>\n{doctype}{body}".encode()


def test_hostile_xml_is_bad_payload_and_nothing_is_fetched(rig: Rig) -> None:
    # Entity expansion (an XML bomb): the first bad_payload of the minute goes out at once.
    levels = [f'<!ENTITY lol0 "{"lol" * 10}">']
    levels += [f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)]
    bomb = _cap_with_doctype(rig, f"<!DOCTYPE alert [{''.join(levels)}]>", "&lol9;")
    raw = seal(bomb, "cap", rig.centre.name, rig.centre.key)
    mark = rig.mark()
    rig.publish(TOWN_TOPIC, raw)
    assert_envelope_rejected(rig, mark, raw, "bad_payload", TOWN_TOPIC, rig.centre.name)

    # An external entity pointing at a listening socket: never fetched; folded, but logged.
    with socket.create_server(("127.0.0.1", 0)) as trap:
        trap.setblocking(False)
        url = f"http://127.0.0.1:{trap.getsockname()[1]}/evil.dtd"
        doctype = f'<!DOCTYPE alert [<!ENTITY xxe SYSTEM "{url}">]>'
        raw = seal(_cap_with_doctype(rig, doctype, "&xxe;"), "cap", rig.centre.name, rig.centre.key)
        mark = rig.mark()
        rig.publish(TOWN_TOPIC, raw)
        assert_silent_and_no_receipts(rig, mark)
        with pytest.raises(BlockingIOError):
            trap.accept()  # nobody came to fetch the entity
    assert rig.events("downlink_rejected", mark) == []
    assert rejection_logged(rig, "bad_payload", raw)


# -- a test alert without test sound -------------------------------------------------------------


def test_test_alert_runs_silently(rig: Rig) -> None:
    mark = rig.mark()
    alert = rig.alert(status="test", repeat=2, tone="chime")
    rig.send(alert)
    played = rig.wait_status(alert.id, "played")
    assert played["silent"] is True
    assert isinstance(played["duration_s"], float | int)
    assert rig.statuses(alert.id, mark) == ["received", "queued", "playing", "played"]
    rig.settle()
    assert rig.audio_since(mark) == b""  # not even silence was written


def test_payload_without_readable_id_is_a_downlink_rejected_event(rig: Rig) -> None:
    mark = rig.mark()
    raw = seal(b"[1, 2, 3]", "alert", rig.centre.name, rig.centre.key)
    rig.publish(TOWN_TOPIC, raw)
    assert_silent_and_no_receipts(rig, mark)
    # Reported at once, or folded into an open bad_payload minute; logged either way.
    events = rig.events("downlink_rejected", mark)
    assert all(e["payload_sha256"] == sha256(raw) for e in events)
    assert rejection_logged(rig, "bad_payload", raw)


@pytest.mark.parametrize("alert_id", ["local:river-high:1", "cmd:reboot-1"])
def test_central_alert_may_not_take_an_id_the_station_uses_for_itself(
    rig: Rig, alert_id: str
) -> None:
    """Local broadcasts and commands live in the same log as `local:…` and `cmd:…`."""
    mark = rig.mark()
    rig.send(rig.alert(id=alert_id, repeat=1))
    rig.barrier()
    assert rig.wait_status(alert_id, "rejected")["reason"] == "bad_payload"
    assert rig.statuses(alert_id, mark) == ["rejected"]
    rig.settle()
    assert rig.silent_since(mark)
