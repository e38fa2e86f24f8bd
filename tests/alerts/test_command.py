"""Commands (docs/protocol.md §8): the four commands, their arguments, and what is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.downlink.alert_model import PayloadError
from gateway.downlink.command_model import parse_command


def command(**changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "id": "cmd-0001",
        "station": "lq-371581001201-01",
        "sent": "2026-07-01T08:00:00+08:00",
        "expires": "2026-07-01T08:10:00+08:00",
        "cmd": "status",
        "args": {},
    }
    fields.update(changes)
    return json.dumps(fields).encode()


@pytest.mark.parametrize("cmd", ["status", "cancel_all"])
def test_commands_without_arguments(cmd: str) -> None:
    parsed = parse_command(command(cmd=cmd))
    assert (parsed.id, parsed.cmd) == ("cmd-0001", cmd)


def test_args_may_be_left_out() -> None:
    fields = json.loads(command())
    del fields["args"]
    assert parse_command(json.dumps(fields).encode()).args == {}


def test_speaker_test_volume_defaults_to_0_3() -> None:
    assert parse_command(command(cmd="speaker_test")).args == {"volume": 0.3}
    assert parse_command(command(cmd="speaker_test", args={"volume": 1})).args == {"volume": 1.0}


def test_resend_range() -> None:
    parsed = parse_command(command(cmd="resend", args={"from_seq": 10, "to_seq": 20}))
    assert parsed.args == {"from_seq": 10, "to_seq": 20}


@pytest.mark.parametrize(
    "changes",
    [
        {"cmd": "reboot"},
        {"cmd": "Status"},
        {"cmd": "speaker_test", "args": {"volume": 1.5}},
        {"cmd": "speaker_test", "args": {"volume": "loud"}},
        {"cmd": "resend", "args": {"from_seq": 5}},
        {"cmd": "resend", "args": {"from_seq": 9, "to_seq": 3}},
        {"cmd": "resend", "args": {"from_seq": -1, "to_seq": 3}},
        {"cmd": "resend", "args": {"from_seq": "1", "to_seq": "3"}},
        {"args": []},
        {"sent": "2026-07-01T08:00:00"},
        {"expires": "2026-07-01T07:00:00+08:00"},
        {"station": None},
        {"station": ""},
        {"station": 7},
    ],
    ids=lambda c: json.dumps(c)[:40],
)
def test_bad_commands_are_bad_payload_with_the_id(changes: dict[str, Any]) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_command(command(**changes))
    assert (caught.value.reason, caught.value.alert_id) == ("bad_payload", "cmd-0001")


def test_a_command_must_name_its_station() -> None:
    fields = json.loads(command())
    del fields["station"]
    with pytest.raises(PayloadError) as caught:
        parse_command(json.dumps(fields).encode())
    assert (caught.value.reason, caught.value.alert_id) == ("bad_payload", "cmd-0001")
    assert "station" in caught.value.detail


def test_lifetime_is_capped() -> None:
    """Revision 2 (§8): expires - sent at most security.max_command_lifetime_s."""
    assert parse_command(command(), max_lifetime_s=600).station == "lq-371581001201-01"
    two_hours = command(expires="2026-07-01T10:00:00+08:00")
    with pytest.raises(PayloadError) as caught:
        parse_command(two_hours, max_lifetime_s=600)
    assert (caught.value.reason, caught.value.alert_id) == ("bad_payload", "cmd-0001")
    assert "7200 s" in caught.value.detail


@pytest.mark.parametrize("payload", [b"", b"{}", b"[1]", command(id="")])
def test_unreadable_commands_have_no_id(payload: bytes) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_command(payload)
    assert (caught.value.reason, caught.value.alert_id) == ("bad_payload", None)
