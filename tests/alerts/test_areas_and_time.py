"""Area matching on the area path (docs/protocol.md §1) and the §6.1 time checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.downlink.alert_model import (
    area_path,
    check_time,
    epoch_ms,
    is_for_station,
    normalize_area,
    parse_alert_json,
)
from gateway.downlink.command_model import parse_command
from tests.alerts.samples import STATION_AREA, alert_json

SKEW_S = 300


def test_area_path_is_the_five_prefixes() -> None:
    assert area_path(STATION_AREA) == ["37", "3715", "371581", "371581001", "371581001201"]


@pytest.mark.parametrize(
    "bad", ["37158100120", "3715810012011", "37158100120x", "", "３７１５８１００１２０１"]
)
def test_station_area_must_be_twelve_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="12-digit"):
        area_path(bad)


@pytest.mark.parametrize(
    "areas",
    [["all"], ["37"], ["3715"], ["371581"], ["371581001"], ["371581001201"], ["11", "371581"]],
)
def test_alert_for_any_code_on_the_path_is_for_the_station(areas: list[str]) -> None:
    assert is_for_station(parse_alert_json(alert_json(areas=areas)), STATION_AREA)


@pytest.mark.parametrize(
    "areas",
    [
        ["371581001202"],  # the next village
        ["371581002"],  # another town of the county
        ["3716"],  # another city
        ["11"],  # another province
        ["371581001201"[:6] + "102"],  # a town code that shares a 6-digit prefix only
        [],
    ],
)
def test_alert_for_other_places_is_not(areas: list[str]) -> None:
    assert not is_for_station(parse_alert_json(alert_json(areas=areas)), STATION_AREA)


def test_prefix_of_a_code_is_not_enough() -> None:
    """Matching is on whole path entries: '3715810' is no code at all, '37158100' neither."""
    with pytest.raises(ValueError):
        normalize_area("3715810")


def test_padded_gbt2260_codes_match_their_level() -> None:
    assert is_for_station(parse_alert_json(alert_json(areas=["370000"])), STATION_AREA)
    assert is_for_station(parse_alert_json(alert_json(areas=["371500"])), STATION_AREA)
    assert not is_for_station(parse_alert_json(alert_json(areas=["371600"])), STATION_AREA)


def test_cancel_without_areas_is_for_every_station() -> None:
    cancel = parse_alert_json(alert_json(msg_type="cancel", references=["x"], areas=[], text=""))
    assert is_for_station(cancel, STATION_AREA)


@pytest.mark.parametrize(
    ("code", "canonical"),
    [
        ("all", "all"),
        (" 371581 ", "371581"),
        ("370000", "37"),
        ("371500", "3715"),
        ("371581000", "371581"),
        ("371581001000", "371581001"),
        ("371581000000", "371581"),
        ("371581001201", "371581001201"),
        ("371581001200", "371581001200"),
    ],
)
def test_normalize_area(code: str, canonical: str) -> None:
    assert normalize_area(code) == canonical


NOW = datetime(2026, 7, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
NOW_MS = epoch_ms(NOW)


def timed_alert(sent: datetime, expires: datetime) -> bytes:
    return alert_json(sent=sent.isoformat(), expires=expires.isoformat())


@pytest.mark.parametrize(
    ("sent_offset_s", "expires_offset_s", "expected"),
    [
        (0, 3600, "ok"),
        (-7200, -1, "expired"),
        (-7200, 0, "expired"),
        (SKEW_S, SKEW_S + 60, "ok"),
        (SKEW_S + 1, SKEW_S + 60, "from_future"),
        (-3600, 1, "ok"),
    ],
)
def test_time_checks(sent_offset_s: int, expires_offset_s: int, expected: str) -> None:
    alert = parse_alert_json(
        timed_alert(
            NOW + timedelta(seconds=sent_offset_s), NOW + timedelta(seconds=expires_offset_s)
        )
    )
    assert check_time(alert, NOW_MS, clock_synced=True, max_skew_s=SKEW_S) == expected


@pytest.mark.parametrize(
    ("offsets", "expected"),
    [((-7200, -60), "expired"), ((3600, 7200), "ok"), ((0, 60), "ok")],
)
def test_unsynced_clock_checks_expiry_but_not_the_future(
    offsets: tuple[int, int], expected: str
) -> None:
    """Revision 2 (§6.1): `now` is then max(clock, time floor); only `from_future` is skipped."""
    alert = parse_alert_json(
        timed_alert(NOW + timedelta(seconds=offsets[0]), NOW + timedelta(seconds=offsets[1]))
    )
    assert check_time(alert, NOW_MS, clock_synced=False, max_skew_s=SKEW_S) == expected


def test_lifetime_cap_shortens_expiry() -> None:
    alert = parse_alert_json(timed_alert(NOW - timedelta(hours=2), NOW + timedelta(days=30)))
    assert check_time(alert, NOW_MS, True, SKEW_S) == "ok"
    assert check_time(alert, NOW_MS, True, SKEW_S, max_lifetime_s=3 * 3600) == "ok"
    assert check_time(alert, NOW_MS, True, SKEW_S, max_lifetime_s=3600) == "expired"
    assert check_time(alert, NOW_MS, False, SKEW_S, max_lifetime_s=7200) == "expired"


def test_time_zones_are_compared_as_instants() -> None:
    utc_expires = (NOW + timedelta(seconds=30)).astimezone(UTC)
    alert = parse_alert_json(timed_alert(NOW - timedelta(hours=1), utc_expires))
    assert check_time(alert, NOW_MS, True, SKEW_S) == "ok"
    assert check_time(alert, NOW_MS + 30_000, True, SKEW_S) == "expired"


def test_commands_get_the_same_time_checks() -> None:
    command = parse_command(
        b'{"id": "c-1", "station": "s-1", "sent": "2026-07-01T08:10:00+08:00",'
        b' "expires": "2026-07-01T09:00:00+08:00", "cmd": "status"}'
    )
    assert check_time(command, NOW_MS, True, SKEW_S) == "from_future"
    assert check_time(command, NOW_MS, False, SKEW_S) == "ok"  # unsynced: no from_future
    assert check_time(command, epoch_ms(NOW + timedelta(hours=2)), True, SKEW_S) == "expired"
