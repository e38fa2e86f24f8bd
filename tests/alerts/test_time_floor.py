"""The time floor (docs/protocol.md §6.1) kept in a real station database across reopenings."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import __release_date__
from gateway.clock import StationClock
from gateway.downlink.time_floor import STATE_KEY, TimeFloor, release_ms
from gateway.store.outbox import Store

DAY_MS = 86_400_000


class SetClock(StationClock):
    """A station clock the test sets: its time and whether it is synced."""

    def __init__(self, now_ms: int, synced: bool) -> None:
        super().__init__("synced" if synced else "unsynced")
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


def open_store(path: Path) -> Store:
    return Store(path, station_id="t-1", max_mb=16, max_age_days=30, commit_interval_s=0.2)


def test_a_new_database_starts_at_the_release_date(tmp_path: Path) -> None:
    assert __release_date__ and release_ms() % DAY_MS == 0
    with open_store(tmp_path / "g.db") as store:
        floor = TimeFloor(store, SetClock(0, synced=False))  # a Pi booted in 1970
        assert floor.floor_ms == release_ms()
        assert floor.now_ms() == release_ms()
        assert store.state_value(STATE_KEY) == str(release_ms())


def test_unsynced_the_floor_rises_with_accepted_messages_and_never_falls(tmp_path: Path) -> None:
    start = release_ms() + 10 * DAY_MS
    clock = SetClock(start, synced=False)
    with open_store(tmp_path / "g.db") as store:
        floor = TimeFloor(store, clock)
        assert floor.now_ms() == start  # the clock is later than the floor
        floor.accepted(start + 5_000)
        assert floor.floor_ms == start + 5_000 and floor.now_ms() == start + 5_000
        floor.accepted(start + 1_000)
        clock.now = start - DAY_MS  # NTP is blocked and the clock jumps back
        floor.tick(force=True)
        assert floor.floor_ms == start + 5_000 and floor.now_ms() == start + 5_000
    with open_store(tmp_path / "g.db") as store:
        assert TimeFloor(store, SetClock(0, synced=False)).floor_ms == start + 5_000


def test_synced_the_floor_is_the_clock_even_below_a_wrong_sent(tmp_path: Path) -> None:
    start = release_ms() + 10 * DAY_MS
    with open_store(tmp_path / "g.db") as store:
        floor = TimeFloor(store, SetClock(start + DAY_MS, synced=False))
        floor.accepted(start + DAY_MS)  # a `sent` a day ahead pushed the floor
    clock = SetClock(start, synced=True)
    with open_store(tmp_path / "g.db") as store:
        floor = TimeFloor(store, clock)
        assert floor.floor_ms == start and floor.now_ms() == start
        floor.accepted(start + 60_000)  # synced: `sent` does not move the floor
        assert floor.floor_ms == start
        clock.now = start + 30_000
        floor.tick(force=True)
        assert store.state_value(STATE_KEY) == str(start + 30_000)


@pytest.mark.parametrize("text", ["garbage", ""])
def test_a_damaged_floor_row_falls_back_to_the_release_date(tmp_path: Path, text: str) -> None:
    with open_store(tmp_path / "g.db") as store:
        store.save_state_value(STATE_KEY, text)
        assert TimeFloor(store, SetClock(0, synced=False)).floor_ms == release_ms()
