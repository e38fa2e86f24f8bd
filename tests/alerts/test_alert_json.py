"""JSON alerts (docs/protocol.md §6.1): every field's rule and the reason a bad one gets."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.downlink.alert_model import Alert, PayloadError, alert_to_json, parse_alert_json
from tests.alerts.samples import alert_fields, alert_json, make_wav

ID = "371581-20260701-0007"


def rejected(payload: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_alert_json(payload)
    return caught.value


def test_protocol_example_parses() -> None:
    alert = parse_alert_json(alert_json())
    assert alert.id == ID
    assert (alert.msg_type, alert.status, alert.level, alert.tone, alert.repeat) == (
        "alert",
        "actual",
        "red",
        "siren",
        3,
    )
    assert alert.areas == ["371581001"]
    assert alert.sent.utcoffset() is not None and alert.expires > alert.sent


def test_round_trip_through_alert_to_json(wav_b64: str) -> None:
    alert = parse_alert_json(alert_json(audio={"format": "wav", "data": wav_b64}))
    again = parse_alert_json(alert_to_json(alert))
    assert again == alert
    assert json.loads(alert_to_json(alert))["audio"] == {"format": "wav", "data": wav_b64}


def test_optional_fields_default_to_station_defaults() -> None:
    fields = alert_fields()
    for name in ("references", "clip", "audio", "tone", "repeat"):
        del fields[name]
    alert = parse_alert_json(json.dumps(fields).encode())
    assert (alert.tone, alert.repeat, alert.clip, alert.audio, alert.references) == (
        None,
        None,
        None,
        None,
        [],
    )


def test_null_tone_repeat_and_text_are_accepted() -> None:
    alert = parse_alert_json(alert_json(tone=None, repeat=None, text=None, clip="flood_warning"))
    assert (alert.tone, alert.repeat, alert.text, alert.clip) == (None, None, "", "flood_warning")


def test_unknown_fields_are_ignored() -> None:
    assert parse_alert_json(alert_json(channel="fm", priority=1)).id == ID


@pytest.mark.parametrize("status", ["actual", "exercise", "test"])
def test_supported_statuses(status: str) -> None:
    assert parse_alert_json(alert_json(status=status)).status == status


@pytest.mark.parametrize("status", ["system", "draft", "Actual", "real"])
def test_other_statuses_are_unsupported_with_the_id(status: str) -> None:
    error = rejected(alert_json(status=status))
    assert (error.reason, error.alert_id) == ("unsupported_status", ID)


@pytest.mark.parametrize("clip", ["../../etc/passwd", "Flood", "a b", "", "x" * 65, "警报"])
def test_bad_clip_names_are_unknown_clip(clip: str) -> None:
    error = rejected(alert_json(clip=clip))
    assert (error.reason, error.alert_id) == ("unknown_clip", ID)


def test_inline_wav_audio_is_decoded(wav_b64: str) -> None:
    alert = parse_alert_json(alert_json(audio={"format": "wav", "data": wav_b64}))
    assert alert.audio is not None and alert.audio.data == base64.b64decode(wav_b64)


@pytest.mark.parametrize(
    "audio",
    [
        {"format": "mp3", "data": base64.b64encode(make_wav()).decode()},
        {"format": "wav", "data": "not base64!"},
        {"format": "wav", "data": base64.b64encode(b"RIFF0000WAVEjunk").decode()},
        {"format": "wav", "data": base64.b64encode(make_wav()[:-100]).decode()},
        {"format": "wav", "data": base64.b64encode(make_wav(frames=0)).decode()},
        {"format": "wav", "data": base64.b64encode(make_wav(channels=3)).decode()},
        {"format": "wav", "data": base64.b64encode(make_wav(rate=4000)).decode()},
        {"format": "wav"},
        "UklGRg==",
        [1, 2],
    ],
    ids=[
        "mp3",
        "bad-base64",
        "not-wav",
        "truncated",
        "empty",
        "3-channels",
        "4-khz",
        "no-data",
        "string",
        "list",
    ],
)
def test_bad_audio(audio: Any) -> None:
    error = rejected(alert_json(audio=audio))
    assert (error.reason, error.alert_id) == ("bad_audio", ID)


@pytest.mark.parametrize(
    "changes",
    [
        {"level": "purple"},
        {"level": "RED"},
        {"msg_type": "ack"},
        {"tone": "horn"},
        {"repeat": 0},
        {"repeat": 11},
        {"repeat": "3"},
        {"repeat": 2.5},
        {"areas": ["37158"]},
        {"areas": ["village"]},
        {"areas": "371581"},
        {"references": "a,b"},
        {"references": [""]},
        {"sender": ""},
        {"event": None},
        {"text": 5},
        {"sent": "2026-07-01T08:00:00"},
        {"sent": "2026-07-01"},
        {"sent": 1767225600000},
        {"expires": "yesterday"},
        {"msg_type": "update", "references": []},
        {"msg_type": "cancel"},
        {"tone": "none", "text": "", "clip": None, "audio": None},
    ],
    ids=lambda c: "-".join(f"{k}={v!r}"[:30] for k, v in c.items()),
)
def test_bad_fields_are_bad_payload_with_the_id(changes: dict[str, Any]) -> None:
    error = rejected(alert_json(**changes))
    assert (error.reason, error.alert_id) == ("bad_payload", ID)


def test_expires_before_sent_is_bad_payload() -> None:
    fields = alert_fields()
    fields["sent"], fields["expires"] = fields["expires"], fields["sent"]
    assert rejected(json.dumps(fields).encode()).reason == "bad_payload"


@pytest.mark.parametrize("missing", ["id", "sender", "sent", "expires", "level", "areas", "event"])
def test_missing_required_field(missing: str) -> None:
    fields = alert_fields()
    del fields[missing]
    assert rejected(json.dumps(fields).encode()).reason == "bad_payload"


@pytest.mark.parametrize("bad_id", ["", "x" * 129, "line\nbreak", "tab\there", 7, None])
def test_unreadable_id_gives_no_id(bad_id: Any) -> None:
    error = rejected(alert_json(id=bad_id))
    assert (error.reason, error.alert_id) == ("bad_payload", None)


def test_a_bad_field_outranks_a_special_reason() -> None:
    """Several faults: the general bad_payload wins over unsupported_status."""
    error = rejected(alert_json(status="draft", level="purple"))
    assert error.reason == "bad_payload"


def test_id_of_128_printable_characters_is_accepted() -> None:
    assert parse_alert_json(alert_json(id="预" * 128)).id == "预" * 128


@pytest.mark.parametrize(
    "payload", [b"", b"not json", b"[]", b"null", b"\xff\xfe", b'{"id": "x"'], ids=repr
)
def test_not_an_alert_object(payload: bytes) -> None:
    error = rejected(payload)
    assert (error.reason, error.alert_id) == ("bad_payload", None)


def test_cancel_and_update_carry_references() -> None:
    cancel = parse_alert_json(alert_json(msg_type="cancel", references=[ID], text=""))
    update = parse_alert_json(alert_json(msg_type="update", references=[ID, "other"]))
    assert cancel.references == [ID] and update.references == [ID, "other"]
    assert not cancel.has_speech() and update.has_speech()


def test_zero_padded_area_codes_are_normalised() -> None:
    alert = parse_alert_json(alert_json(areas=["370000", "371581000000", "ALL", "371581"]))
    assert alert.areas == ["37", "371581", "all"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1000))
def test_random_payloads_raise_only_payload_error(payload: bytes) -> None:
    try:
        parse_alert_json(payload)
    except PayloadError as exc:
        assert exc.reason in {"bad_payload", "unsupported_status", "unknown_clip", "bad_audio"}


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(alert_fields())),
        st.one_of(st.none(), st.text(max_size=20), st.integers(), st.lists(st.text(max_size=5))),
    )
)
def test_random_field_values_raise_only_payload_error(changes: dict[str, Any]) -> None:
    try:
        assert isinstance(parse_alert_json(alert_json(**changes)), Alert)
    except PayloadError as exc:
        assert exc.reason in {"bad_payload", "unsupported_status", "unknown_clip", "bad_audio"}
