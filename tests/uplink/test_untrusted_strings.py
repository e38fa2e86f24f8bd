"""Strings that came from outside (a key name in a rejected envelope) cannot break the store.

JSON may carry a lone UTF-16 surrogate ("\\ud800"); Python keeps it in a str, but SQLite
cannot encode it. Once, such an event aborted the commit that also carried the buffered
readings: they were lost without a `data_dropped`, and the outbox stopped draining.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.store.outbox import Store


def open_store(path: Path) -> Store:
    return Store(path, station_id="t-1", max_mb=64, max_age_days=30, commit_interval_s=60)


def test_an_event_with_a_lone_surrogate_is_stored_and_loses_no_reading(tmp_path: Path) -> None:
    store = open_store(tmp_path / "g.db")
    for i in range(3):
        store.add_reading("co-1", "co_ppm", float(i), 1_767_225_600_000 + i)
    seq = store.add_event("downlink_rejected", {"reason": "unknown_key", "key": "\ud800x"}).seq
    store.close()
    store = open_store(tmp_path / "g.db")
    try:
        records = [json.loads(r.json) for r in store.records(1, store.last_seq)]
    finally:
        store.close()
    assert seq is not None and seq > 0
    assert [r["v"] for r in records if r.get("q") == "co_ppm"] == [0.0, 1.0, 2.0]
    (event,) = [r for r in records if r.get("type") == "downlink_rejected"]
    assert event["key"] == "\ud800x"  # kept, as a JSON escape


def test_a_record_sqlite_refuses_does_not_take_the_buffered_readings_with_it(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "g.db")
    store.add_reading("co-1", "co_ppm", 1.0, 1_767_225_600_000)
    with pytest.raises(OverflowError):
        store.add_event("started", {"version": "x"}, ts=2**70)  # too big for SQLite's INTEGER
    store.flush()
    records = [json.loads(r.json) for r in store.records(1, store.last_seq)]
    store.close()
    assert [r["v"] for r in records if r.get("q") == "co_ppm"] == [1.0]
