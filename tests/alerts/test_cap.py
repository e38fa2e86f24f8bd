"""CAP 1.1/1.2 intake (docs/protocol.md §6.2) on the real vectors, our own, and hostile documents."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.downlink.alert_model import PayloadError, is_for_station, parse_alert_json
from gateway.downlink.cap import build_cap, parse_cap
from tests.alerts.samples import CAP_DIR, SHARED_CAP_DIR, STATION_AREA, alert_json, make_wav

Vector = Callable[[str], bytes]
SHARED_NAMES = [
    "canada.cap",
    "earthquake-iso8859-1.cap",
    "earthquake.cap",
    "weather.cap",
    "xee.cap",
]


def cap_error(payload: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_cap(payload)
    return caught.value


def test_copies_match_the_shared_vectors() -> None:
    if not SHARED_CAP_DIR.is_dir():
        pytest.skip("the shared design folder is not beside this checkout")
    for name in SHARED_NAMES:
        assert (CAP_DIR / name).read_bytes() == (SHARED_CAP_DIR / name).read_bytes(), name


def test_earthquake_cap_1_1(cap_vector: Vector) -> None:
    alert = parse_cap(cap_vector("earthquake.cap"))
    assert alert.id == "USGS-earthquakes-us2010apcd.6.20100831T000925.496Z"
    assert alert.sender == "http://earthquake.usgs.gov/research/monitoring/anss/neic/"
    assert (alert.msg_type, alert.status, alert.level) == ("alert", "actual", "blue")  # Unknown
    assert alert.event == "Earthquake"  # the first <info>, English, has no <language>
    assert alert.sent == datetime(2010, 8, 31, 5, 9, 25, tzinfo=UTC)
    assert alert.expires == datetime(2010, 9, 2, 5, 9, 25, tzinfo=UTC)
    assert alert.text.startswith("EQ 5.3 Neiafu, Tonga - PRELIMINARY REPORT\nAn earthquake")
    assert alert.areas == []  # circles are ignored, no GB/T 2260 geocode
    assert (alert.tone, alert.repeat, alert.clip, alert.audio) == (None, None, None, None)


def test_earthquake_declared_iso_8859_1_with_xml_signature(cap_vector: Vector) -> None:
    alert = parse_cap(cap_vector("earthquake-iso8859-1.cap"))
    assert alert.id == "USGS-earthquakes-usB000D5T4.3947362.7.20121014T225304.360Z.0"
    assert "Usulután, Usulután, El Salvador" in alert.text
    assert alert.text.endswith("\nNone")  # headline, description, instruction
    assert alert.level == "blue"
    assert "dN+uAR76" not in alert.model_dump_json()  # the Signature is ignored


def test_weather_single_quoted_namespace_comment_multiline(cap_vector: Vector) -> None:
    alert = parse_cap(cap_vector("weather.cap"))
    assert alert.id == "NOAA-NWS-ALERTS-MT20120830100700TFXFlashFloodWatchTFX20120830180000MT"
    assert (alert.level, alert.event) == ("orange", "Flash Flood Watch")
    assert "http-date" not in alert.text
    assert "DEBRIS FLOWS IN WILDLAND FIRE BURN AREAS" in alert.text
    assert alert.text.rstrip().endswith("SHOULD FLASH FLOOD WARNINGS BE ISSUED.")
    assert alert.areas == []  # FIPS6 and UGC are not division codes


def test_canada_update_with_references_first_info_when_no_zh(cap_vector: Vector) -> None:
    alert = parse_cap(cap_vector("canada.cap"))
    assert (alert.msg_type, alert.level) == ("update", "orange")
    assert alert.references == [
        "CA-EC-CWTO-2011-138774",
        "CA-EC-CWTO-2011-138729",
        "CA-EC-CWTO-2011-138727",
        "CA-EC-CWTO-2011-138651",
        "CA-EC-CWTO-2011-138649",
    ]
    assert alert.event == "Vent de tempéte"  # French info comes first
    assert alert.text.startswith("alerte vent de tempête\n")
    assert alert.audio is None  # the image resource is ignored


def test_xee_is_rejected_without_any_network_access(
    cap_vector: Vector, monkeypatch: pytest.MonkeyPatch, listener: list[str]
) -> None:
    attempts: list[Any] = []

    def no_network(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise AssertionError(f"tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    error = cap_error(cap_vector("xee.cap"))
    assert (error.reason, error.alert_id) == ("bad_payload", None)
    assert attempts == []
    assert listener == []  # nothing reached the port the document names


@pytest.fixture
def listener() -> Iterator[list[str]]:
    """A listener on 127.0.0.1:8080 (the host xee.cap names), recording any connection."""
    seen: list[str] = []
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(("127.0.0.1", 8080))
    except OSError:
        server.bind(("127.0.0.1", 0))  # 8080 busy: the socket guard still catches attempts
    server.listen()
    server.settimeout(0.2)

    def accept() -> None:
        try:
            conn, peer = server.accept()
            seen.append(str(peer))
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    yield seen
    thread.join()
    server.close()


def test_billion_laughs_is_bad_payload(cap_vector: Vector) -> None:
    assert cap_error(cap_vector("billion-laughs.cap")).reason == "bad_payload"


def test_any_doctype_is_bad_payload(cap_vector: Vector) -> None:
    plain = cap_vector("weather.cap")
    with_doctype = plain.replace(b"<alert", b"<!DOCTYPE alert>\n<alert", 1)
    assert parse_cap(plain).id
    assert cap_error(with_doctype).reason == "bad_payload"


def test_zh_info_preferred_gb18030_geocodes_and_audio(cap_vector: Vector) -> None:
    alert = parse_cap(cap_vector("zh-flood-gb18030.cap"))
    assert alert.sender == "临清市应急管理局"
    assert (alert.event, alert.level) == ("洪水", "red")
    assert alert.text == "洪水红色预警\n卫运河水位超过警戒线。\n请沿河群众立即向高处转移。"
    assert alert.areas == ["371581001", "371581102"]  # GB/T 2260 and adcode, padding removed
    assert alert.audio is not None and alert.audio.data[:4] == b"RIFF"
    assert is_for_station(alert, STATION_AREA)


def test_cancel_without_info(cap_vector: Vector) -> None:
    alert = parse_cap(cap_vector("zh-cancel-noinfo.cap"))
    assert (alert.msg_type, alert.references) == ("cancel", ["37158141600000_20260701080000_0007"])
    assert alert.expires - alert.sent == timedelta(hours=24)
    assert not alert.has_speech() and is_for_station(alert, STATION_AREA)


def edited(vector: bytes, old: bytes, new: bytes) -> bytes:
    assert old in vector
    return vector.replace(old, new, 1)


@pytest.mark.parametrize("status", [b"System", b"Draft"])
def test_system_and_draft_are_unsupported(cap_vector: Vector, status: bytes) -> None:
    payload = edited(cap_vector("weather.cap"), b"<status>Actual", b"<status>" + status)
    error = cap_error(payload)
    assert (error.reason, error.alert_id) == (
        "unsupported_status",
        "NOAA-NWS-ALERTS-MT20120830100700TFXFlashFloodWatchTFX20120830180000MT",
    )


@pytest.mark.parametrize(("status", "mapped"), [(b"Exercise", "exercise"), (b"Test", "test")])
def test_exercise_and_test(cap_vector: Vector, status: bytes, mapped: str) -> None:
    payload = edited(cap_vector("weather.cap"), b"<status>Actual", b"<status>" + status)
    assert parse_cap(payload).status == mapped


@pytest.mark.parametrize(
    ("severity", "level"),
    [(b"Extreme", "red"), (b"Severe", "orange"), (b"Moderate", "yellow"), (b"Minor", "blue")],
)
def test_severity_levels(cap_vector: Vector, severity: bytes, level: str) -> None:
    payload = edited(cap_vector("weather.cap"), b"<severity>Severe", b"<severity>" + severity)
    assert parse_cap(payload).level == level


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"<msgType>Alert", b"<msgType>Ack"),
        (b"<sent>2012-08-30T04:07:00-06:00", b"<sent>2012-08-30T04:07:00"),
        (b"<sent>2012-08-30T04:07:00-06:00", b"<sent>yesterday"),
        (b"<expires>2012-08-30T12:00:00-06:00", b"<expires>2012-08-29T12:00:00-06:00"),
        (b"<sender>w-nws.webmaster@noaa.gov", b"<sender>"),
        (
            b"<geocode>\n<valueName>FIPS6",
            b"<geocode>\n<valueName>GB/T 2260</valueName><value>37158</value></geocode><geocode><valueName>x",
        ),
        (b"</msgType>", b"</msgType><references>only-one-part</references>"),
    ],
    ids=[
        "ack",
        "naive-sent",
        "bad-sent",
        "expires-before-sent",
        "no-sender",
        "bad-area",
        "bad-ref",
    ],
)
def test_bad_cap_fields_are_bad_payload_with_the_id(
    cap_vector: Vector, old: bytes, new: bytes
) -> None:
    error = cap_error(edited(cap_vector("weather.cap"), old, new))
    assert error.reason == "bad_payload" and error.alert_id is not None


def test_alert_without_info_is_bad_payload() -> None:
    payload = (CAP_DIR / "zh-cancel-noinfo.cap").read_bytes().replace(b"Cancel", b"Alert")
    assert cap_error(payload).reason == "bad_payload"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not xml",
        b"<alert/>",
        b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.0"/>',
        b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>x',
        b'<?xml version="1.0" encoding="no-such-codec"?><alert/>',
        b'<?xml version="1.0" encoding="GB18030"?><alert>\xff\xff</alert>',
    ],
    ids=["empty", "text", "no-ns", "cap-1.0", "unclosed", "unknown-codec", "bad-bytes"],
)
def test_not_a_cap_alert(payload: bytes) -> None:
    error = cap_error(payload)
    assert (error.reason, error.alert_id) == ("bad_payload", None)


def test_update_with_unknown_references_still_parses_as_an_update(cap_vector: Vector) -> None:
    """Whether it plays as a new alert is the broadcast side's call (§6.2)."""
    alert = parse_cap(cap_vector("canada.cap"))
    assert alert.msg_type == "update" and alert.has_speech()


def test_build_cap_round_trip() -> None:
    wav = make_wav()
    source = parse_alert_json(
        alert_json(
            msg_type="update",
            references=["a-1", "b-2"],
            areas=["371581001", "all"],
            audio={"format": "wav", "data": base64.b64encode(wav).decode()},
            tone=None,
            repeat=None,
        )
    )
    again = parse_cap(build_cap(source))
    assert again == source


def test_build_cap_is_cap_1_2_utf8() -> None:
    document = build_cap(parse_alert_json(alert_json()))
    assert document.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert b'xmlns="urn:oasis:names:tc:emergency:cap:1.2"' in document


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_cap(payload)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_element_text_raises_only_payload_error(value: str) -> None:
    document = (CAP_DIR / "weather.cap").read_text(encoding="utf-8")
    for name in ("severity", "sent", "msgType", "status", "identifier", "event"):
        escaped = value.replace("&", "&amp;").replace("<", "&lt;")
        mutated = document.replace(f"<{name}>", f"<{name}>{escaped}", 1)
        with contextlib.suppress(PayloadError):
            parse_cap(mutated.encode("utf-8", errors="surrogatepass"))


def test_private_scope_addresses_map_to_stations(cap_vector: Vector) -> None:
    public = cap_vector("zh-flood-gb18030.cap")
    assert parse_cap(public).stations is None
    private = public.replace(
        b"<scope>Public</scope>",
        b"<scope>Private</scope>\n  <addresses>lq-371581001201-01  lq-371581001201-02</addresses>",
    )
    assert parse_cap(private).stations == ["lq-371581001201-01", "lq-371581001201-02"]
    nobody = public.replace(b"<scope>Public</scope>", b"<scope>Private</scope>")
    assert parse_cap(nobody).stations == []
    restricted = public.replace(
        b"<scope>Public</scope>",
        b"<scope>Restricted</scope><restriction>x</restriction><addresses>a-1</addresses>",
    )
    assert parse_cap(restricted).stations is None


def test_build_cap_round_trip_with_stations() -> None:
    source = parse_alert_json(alert_json(stations=["lq-371581001201-01"]))
    document = build_cap(source)
    assert b"<scope>Private</scope>" in document
    assert parse_cap(document).stations == ["lq-371581001201-01"]
