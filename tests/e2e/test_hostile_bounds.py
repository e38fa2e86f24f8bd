"""Hostile but verified traffic costs a lookup, not a receipt, a log line or a crash (issue 12).

Replays of one signed message are answered once (docs/protocol.md §6), also across a restart;
their log lines are folded per minute; the parser gaps the review found (undecodable CAP
encodings, duplicate JSON keys, unbounded references, an out-of-range resend) are answered
with a clear ``bad_payload``; and a newline in an unverified key name cannot forge a log line.
Everything is observed as the centre sees it (receipts, events, responses) and in the
station's own log, from the real `cunxiang run`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway.downlink.cap import build_cap
from gateway.downlink.envelope import seal
from harness.station import Centre
from tests.e2e.conftest import CMD_TOPIC, TOWN_TOPIC, Rig, running_station


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_station(tmp_path_factory.mktemp("hostile")) as station:
        yield station


def warning_lines(rig: Rig, needle: str) -> list[str]:
    return [
        line
        for line in rig.log().splitlines()
        if needle in line and re.search(r"\b(WARNING|ERROR)\b", line)
    ]


def test_fifty_replays_of_an_expired_alert_get_one_receipt_also_after_a_restart(
    rig: Rig,
) -> None:
    now = datetime.now(UTC)
    alert = rig.alert(sent=now - timedelta(hours=2), expires=now - timedelta(minutes=1))
    raw = rig.centre.seal_alert(alert)
    mark = rig.mark()
    for _ in range(50):
        rig.publish(TOWN_TOPIC, raw)
    rig.barrier()
    rig.wait_status(alert.id, "expired")
    print(f"50 replays of an expired alert: {len(rig.receipts(alert.id, mark))} receipt(s)")
    assert rig.statuses(alert.id, mark) == ["expired"]
    # A rejected one too: the first answer counts, whatever it was.
    fields = rig.alert_fields(clip="nosuchclip", level="red")
    bad = rig.sealed_fields(fields)
    for _ in range(30):
        rig.publish(TOWN_TOPIC, bad)
    rig.barrier()
    warnings = warning_lines(rig, "rejected")
    print(f"30 replays of a rejected alert: {len(rig.receipts(fields['id'], mark))} receipt(s)")
    print(f"warning lines about rejections so far: {len(warnings)}")
    assert rig.statuses(fields["id"], mark) == ["rejected"]
    assert len(warnings) <= 2
    # The station remembers across a restart.
    rig.station.terminate()
    rig.start()
    restarted = rig.mark()
    rig.publish(TOWN_TOPIC, raw)
    rig.publish(TOWN_TOPIC, bad)
    rig.barrier()
    assert rig.receipts(alert.id, restarted) == []
    assert rig.receipts(fields["id"], restarted) == []


def test_cap_in_an_encoding_outside_the_allow_list_is_bad_payload_with_a_receipt(
    rig: Rig,
) -> None:
    mark = rig.mark()
    ids = []
    for encoding in ("hex", "base64", "rot13", "punycode", "unicode_escape", "utf-7"):
        alert = rig.alert(clip=None, text="测试", level="red")
        document = build_cap(alert).replace(b"encoding='utf-8'", f"encoding='{encoding}'".encode())
        assert f"encoding='{encoding}'".encode() in document
        rig.publish(TOWN_TOPIC, seal(document, "cap", rig.centre.name, rig.centre.key))
        ids.append(alert.id)
    # An allowed one still plays: GB18030 as Chinese feeds send it.
    good = rig.alert(clip=None, text="测试", level="blue", status="test")
    document = build_cap(good).decode("utf-8").replace("encoding='utf-8'", "encoding='GB18030'")
    rig.publish(
        TOWN_TOPIC, seal(document.encode("gb18030"), "cap", rig.centre.name, rig.centre.key)
    )
    rig.barrier()
    for alert_id in ids:
        receipt = rig.wait_status(alert_id, "rejected")
        assert receipt["reason"] == "bad_payload", receipt
    rig.wait_status(good.id, "played")
    assert rig.station.running()
    assert "unexpected error" not in rig.log()
    assert rig.statuses(ids[0], mark) == ["rejected"]


def test_duplicate_keys_in_a_json_payload_are_bad_payload(rig: Rig) -> None:
    fields = rig.alert_fields(level="red")
    text = json.dumps(fields, ensure_ascii=False)
    # The same key twice: the first says blue, the last red. Which one counts is a guess.
    spoiled = text.replace('"level": "red"', '"level": "blue", "level": "red"')
    assert spoiled != text
    rig.publish(TOWN_TOPIC, seal(spoiled.encode(), "alert", rig.centre.name, rig.centre.key))
    rig.barrier()
    assert rig.wait_status(fields["id"], "rejected")["reason"] == "bad_payload"


def test_more_than_100_references_is_bad_payload(rig: Rig) -> None:
    fields = rig.alert_fields(msg_type="update", references=[f"a-{n}" for n in range(101)])
    rig.publish(TOWN_TOPIC, rig.sealed_fields(fields))
    cap_alert = rig.alert(msg_type="cancel", references=[f"b-{n}" for n in range(101)])
    rig.send(cap_alert, cap=True)
    rig.barrier()
    assert rig.wait_status(fields["id"], "rejected")["reason"] == "bad_payload"
    assert rig.wait_status(cap_alert.id, "rejected")["reason"] == "bad_payload"


@pytest.mark.parametrize(
    "args",
    [
        {"from_seq": 1, "to_seq": 2**63},
        {"from_seq": 2**64, "to_seq": 2**64 + 1},
        {"from_seq": -1, "to_seq": 5},
        {"from_seq": 9, "to_seq": 3},
    ],
)
def test_resend_out_of_range_gets_a_clear_error(rig: Rig, args: dict[str, int]) -> None:
    response = rig.command("resend", args)
    assert response["ok"] is False
    assert response["error"] == "bad_payload"
    assert rig.station.running()
    assert rig.command("resend", {"from_seq": 1, "to_seq": 2**63 - 1})["ok"] is True


def test_a_newline_in_an_unverified_key_name_cannot_forge_a_log_line(rig: Rig) -> None:
    forged_line = "INFO    gateway.downlink.intake: alert 371581-forged accepted: alert red flood"
    stranger = Centre(name=f"x\n2026-07-01 08:00:00,000 {forged_line}\r\x1b[2K")
    raw = stranger.seal_alert(rig.alert(level="red"))
    envelope = json.loads(raw)
    assert "\n" in envelope["key"]
    rig.publish(TOWN_TOPIC, raw)
    rig.publish(CMD_TOPIC, raw)
    rig.barrier()
    lines = rig.log().splitlines()
    assert not any(line.startswith("2026-07-01 08:00:00") for line in lines)
    assert not any("\x1b" in line or "\r" in line for line in lines)
    assert any("x\\n2026-07-01 08:00:00,000 INFO" in line for line in lines)
    # The event carries it escaped too.
    events = rig.events("downlink_rejected")
    assert any(e.get("key", "").startswith("x\\n2026") for e in events)
