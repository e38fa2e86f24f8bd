"""Schedule parsing and the time arithmetic on their own (docs/protocol.md §10)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.downlink.alert_model import PayloadError
from gateway.programmes.model import QuietHours, parse_schedule
from gateway.programmes.timetable import between, slots_of, upcoming
from gateway.village_mic import trim

SHANGHAI = ZoneInfo("Asia/Shanghai")


def payload(**fields: object) -> bytes:
    body: dict[str, object] = {
        "id": "s",
        "version": 1,
        "sent": "2026-07-01T08:00:00+08:00",
        "areas": ["371581"],
        "items": [{"name": "a", "at": "07:30", "text": "x"}],
    }
    body.update(fields)
    return json.dumps(body).encode()


def ms(year: int, month: int, day: int, hour: int, minute: int, zone: ZoneInfo = SHANGHAI) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=zone).timestamp() * 1000)


def test_quiet_hours_wrap_midnight() -> None:
    quiet = QuietHours.model_validate({"from": "21:30", "to": "06:30"})
    assert quiet.contains(dt.time(23, 0)) and quiet.contains(dt.time(2, 0))
    assert quiet.contains(dt.time(21, 30)) and not quiet.contains(dt.time(6, 30))
    assert not quiet.contains(dt.time(12, 0))
    day = QuietHours.model_validate({"from": "12:00", "to": "14:00"})
    assert day.contains(dt.time(13, 0)) and not day.contains(dt.time(15, 0))


def test_days_validity_and_time_zone_make_the_occurrences() -> None:
    schedule = parse_schedule(
        payload(
            valid_from="2026-07-01",
            valid_until="2026-07-31",
            items=[{"name": "talk", "at": "18:00:30", "days": ["mon", "thu"], "clip": "c"}],
        )
    )
    slots = slots_of("k", schedule)
    found = between(slots, ms(2026, 6, 25, 0, 0), ms(2026, 8, 10, 0, 0))
    days = [o.day for o in found]
    assert days[0] == dt.date(2026, 7, 2)  # 1 July 2026 is a Wednesday; Thursday is the first
    assert all(d.weekday() in (0, 3) for d in days)
    assert days[-1] == dt.date(2026, 7, 30)
    assert found[0].at_ms == ms(2026, 7, 2, 18, 0) + 30_000
    assert found[0].id == "prog:s:talk:2026-07-02"


def test_upcoming_in_another_zone_and_across_midnight() -> None:
    schedule = parse_schedule(
        payload(timezone="Europe/Berlin", items=[{"name": "late", "at": "23:59:59", "text": "x"}])
    )
    berlin = ZoneInfo("Europe/Berlin")
    now = ms(2026, 3, 28, 23, 59, berlin) + 59_500  # 28 March, 23:59:59.5: today's has passed
    nxt = upcoming(slots_of("k", schedule), now, 2)
    assert [o.day for o in nxt] == [dt.date(2026, 3, 29), dt.date(2026, 3, 30)]
    # 29 March 2026: Berlin goes from UTC+1 to UTC+2 at 02:00; 23:59:59 is UTC+2.
    assert nxt[0].at_ms == ms(2026, 3, 29, 23, 59, berlin) + 59_000


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        ({"timezone": "Asia/Nowhere"}, "bad_payload"),
        ({"items": [{"name": "a", "at": "24:00", "text": "x"}]}, "bad_payload"),
        ({"items": [{"name": "a", "at": "7:30", "text": "x"}]}, "bad_payload"),
        ({"items": [{"name": "a", "at": "07:30:61", "text": "x"}]}, "bad_payload"),
        ({"items": [{"name": "a", "at": "07:30", "days": ["monday"], "text": "x"}]}, "bad_payload"),
        ({"items": [{"name": "a", "at": "07:30", "days": []}]}, "bad_payload"),
        ({"items": [{"name": "a", "at": "07:30", "clip": "Bad Name"}]}, "unknown_clip"),
        ({"items": [{"name": "a", "at": "07:30", "tone": "none"}]}, "bad_payload"),
        ({"quiet_hours": {"from": "25:00", "to": "06:00"}}, "bad_payload"),
        ({"valid_from": "2026-07-02", "valid_until": "2026-07-01"}, "bad_payload"),
        ({"version": -1}, "bad_payload"),
    ],
)
def test_bad_schedules_name_their_reason_and_id(spoil: dict[str, object], reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_schedule(payload(**spoil))
    assert caught.value.reason == reason
    assert caught.value.alert_id == "s"


def test_empty_items_withdraw() -> None:
    assert parse_schedule(payload(items=[])).withdrawn


def test_recordings_are_trimmed_oldest_first(tmp_path: Path) -> None:
    for n in range(5):
        path = tmp_path / f"mic-{n}.wav"
        path.write_bytes(bytes(1000))
        os.utime(path, (1000 + n, 1000 + n))
    trim(tmp_path, 2500)
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == ["mic-3.wav", "mic-4.wav"]
