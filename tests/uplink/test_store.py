"""The outbox on its own: seq, durability, rendering, budget, bad files, full disk, alert log."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.store import writer
from gateway.store.alert_records import AlertRecord
from gateway.store.database_file import StoreError
from gateway.store.outbox import Store
from gateway.store.schema import SCHEMA_VERSION
from gateway.store.seq_ranges import SeqRanges, runs_of
from tests.uplink.conftest import STATION_ID, add_readings

DAY_MS = 86_400_000


def new_store(path: Path, **options: object) -> Store:
    settings: dict[str, object] = {
        "station_id": STATION_ID,
        "max_mb": 64,
        "max_age_days": 30,
        "commit_interval_s": 0.1,
    }
    settings.update(options)
    return Store(path, **settings)  # type: ignore[arg-type]


def committed(path: Path) -> list[tuple[int, int]]:
    """(seq, kind) of every committed row, read as another process would."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT seq, kind FROM outbox ORDER BY seq").fetchall()
    finally:
        db.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_readings_are_committed_within_the_interval_without_flush(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    store = new_store(db, commit_interval_s=0.2)
    try:
        add_readings(store, 50)
        deadline = time.monotonic() + 2
        while len(committed(db)) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [seq for seq, _ in committed(db)] == list(range(1, 51))
    finally:
        store.close()


def test_events_are_committed_at_once_and_seq_is_shared(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    store = new_store(db, commit_interval_s=30)
    try:
        add_readings(store, 3)
        seq = store.add_event("sensor_fault", {"sensor": "river", "reason": "no_data"}).seq
        receipt = store.add_receipt("a-1", "received", {}).seq
        # the event commits the readings buffered before it, so seq follows arrival order
        assert (seq, receipt) == (4, 5)
        assert committed(db) == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 2)]
    finally:
        store.close()


def test_seq_is_never_reused_after_the_newest_rows_are_deleted(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    with new_store(db) as store:
        add_readings(store, 10)
        store.flush()
    raw = sqlite3.connect(db)
    raw.execute("DELETE FROM outbox WHERE seq > 5")
    raw.commit()
    raw.close()
    with new_store(db) as store:
        assert store.add_event("started", {"version": "t", "config_hash": "x"}).seq == 11


def test_records_render_as_protocol_objects(tmp_path: Path) -> None:
    with new_store(tmp_path / "gateway.db") as store:
        store.add_reading("co-1", "co_ppm", 12.0, 1767225600000)
        store.add_reading("smoke-1", "smoke", False, 1767225600000, ("clock_unsynced",))
        store.add_event(
            "alarm",
            {"sensor": "co-1", "rule": "co", "level": "orange", "value": 60.5},
            ts=1767225600001,
        )
        store.add_receipt("371581-20260701-0007", "played", {"duration_s": 12.5}, ts=5)
        records = store.records(1, 4)
    assert [r.json for r in records] == [
        '{"seq":1,"ts":1767225600000,"sensor":"co-1","q":"co_ppm","v":12.0}',
        '{"seq":2,"ts":1767225600000,"sensor":"smoke-1","q":"smoke","v":false,'
        '"flags":["clock_unsynced"]}',
        '{"seq":3,"ts":1767225600001,"type":"alarm","sensor":"co-1","rule":"co",'
        '"level":"orange","value":60.5}',
        '{"seq":4,"ts":5,"alert":"371581-20260701-0007","status":"played","duration_s":12.5}',
    ]
    assert [r.kind for r in records] == ["reading", "reading", "event", "receipt"]


def test_backlog_and_marks_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    with new_store(db) as store:
        add_readings(store, 100)
        store.flush()
        count, oldest = store.backlog()
        assert count == 100 and oldest is not None
        store.mark_sent([(1, 40), (61, 70)])
        assert store.backlog()[0] == 50
        assert store.unsent_span(0) == (41, 60)
        assert store.unsent_span(60) == (71, 100)
    with new_store(db) as store:
        assert store.backlog()[0] == 50
        assert store.unsent_span(0) == (41, 60)


def test_bad_values_and_fields_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    with new_store(tmp_path / "gateway.db") as store:
        with pytest.raises(ValueError, match="finite"):
            store.add_reading("river", "water_level_m", float("nan"), 1)
        with pytest.raises(ValueError, match="number or a bool"):
            store.add_reading("river", "water_level_m", "3.2", 1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="set by the store"):
            store.add_event("alarm", {"seq": 3})
        with pytest.raises(ValueError, match="JSON"):
            store.add_event("alarm", {"value": object()})
        store.flush()
        assert store.last_seq == 0


@pytest.mark.parametrize(
    "content",
    [b"this is not a database, it is a technician's notes\n" * 50, bytes(range(256)) * 64],
    ids=["text", "binary"],
)
def test_a_damaged_or_foreign_file_is_refused_and_left_untouched(
    tmp_path: Path, content: bytes
) -> None:
    db = tmp_path / "gateway.db"
    db.write_bytes(content)
    before = digest(db)
    with pytest.raises(StoreError) as error:
        new_store(db)
    assert str(db) in str(error.value) and "untouched" in str(error.value)
    assert digest(db) == before
    assert not (tmp_path / "gateway.db-wal").exists()


def test_another_programs_sqlite_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    other = sqlite3.connect(db)
    other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    other.execute("INSERT INTO invoices VALUES (1, 99.5)")
    other.commit()
    other.close()
    before = digest(db)
    with pytest.raises(StoreError, match="another program"):
        new_store(db)
    assert digest(db) == before


def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    new_store(db).close()
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    before = digest(db)
    with pytest.raises(StoreError, match="newer Cunxiang"):
        new_store(db)
    assert digest(db) == before


def test_a_database_of_another_station_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    new_store(db).close()
    with pytest.raises(StoreError, match="belongs to station"):
        new_store(db, station_id="other-station-9")


def test_a_second_process_cannot_open_the_same_database(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    with new_store(db), pytest.raises(StoreError, match="another cunxiang process"):
        new_store(db)


def test_an_unwritable_folder_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="not-a-folder"):
        new_store(blocker / "gateway.db")


def test_alert_log_deduplicates_across_restarts_and_resumes_unfinished(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    with new_store(db) as store:
        red = AlertRecord(kind="local", level="red", text="撤离")
        assert store.alerts.remember("a-1", red) is True
        assert store.alerts.remember("a-1", AlertRecord(kind="local", level="red")) is False
        assert store.alerts.remember("a-2", AlertRecord(kind="local", level="blue")) is True
        store.alerts.set_state("a-1", "playing")
        store.alerts.set_state("a-2", "played")
    with new_store(db) as store:
        assert store.alerts.remember("a-1", AlertRecord(kind="local")) is False
        unfinished = store.alerts.unfinished()
        assert [(a.id, a.state) for a in unfinished] == [("a-1", "playing")]
        assert unfinished[0].record.level == "red" and unfinished[0].record.text == "撤离"
        assert store.alerts.entry("a-2").state == "played"  # type: ignore[union-attr]
        assert store.alerts.entry("a-3") is None
        assert [a.id for a in store.alerts.recent(5)] == ["a-2", "a-1"]


def test_budget_deletes_sent_records_first_then_reports_unsent_ones(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    with new_store(db, max_mb=1) as store:
        add_readings(store, 20_000)
        store.flush()
        store.mark_sent([(1, 20_000)])
        keep = store.add_event("sensor_fault", {"sensor": "river", "reason": "no_data"}).seq
        add_readings(store, 60_000, start_value=100)
        store.flush()
        store.budget.enforce()
        assert store.budget.used_bytes() <= 1024 * 1024
        rows = committed(db)
    stored = {seq for seq, _ in rows}
    assert keep in stored, "an unsent event is never deleted"
    assert not stored & set(range(1, 20_001)), "sent records go first"
    drops = stored_events(db, "data_dropped")
    assert drops, "unsent readings were deleted, so data_dropped must say so"
    for drop in drops:
        assert drop["from_seq"] > 20_000 and drop["reason"] == "max_mb"
        gone = [s for s in range(drop["from_seq"], drop["to_seq"] + 1) if s not in stored]
        assert len(gone) == drop["count"]
    dropped = {s for d in drops for s in range(d["from_seq"], d["to_seq"] + 1) if s not in stored}
    last_reading = max(seq for seq, kind in rows if kind == 0)
    assert dropped | stored | set(range(1, 20_001)) >= set(range(1, last_reading + 1))


def test_budget_expires_old_records_but_not_those_from_an_unset_clock(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    now = int(time.time() * 1000)
    with new_store(db, max_age_days=30) as store:
        for i in range(10):
            store.add_reading("river", "water_level_m", 1.0, now - 40 * DAY_MS + i)
        for i in range(5):
            store.add_reading(
                "river", "water_level_m", 2.0, now - 40 * DAY_MS + i, ("clock_unsynced",)
            )
        old_event = store.add_event("sensor_ok", {"sensor": "river"}, ts=now - 40 * DAY_MS).seq
        store.mark_sent([(1, 3)])
        add_readings(store, 5)
        store.flush()
        store.budget.enforce()
        stored = {seq for seq, _ in committed(db)}
        drops = stored_events(db, "data_dropped")
    assert not stored & set(range(1, 11)), "old readings are gone (sent ones silently)"
    assert set(range(11, 16)) <= stored, "readings stamped by an unset clock are kept"
    assert old_event in stored, "unsent events are never deleted"
    assert [(d["count"], d["from_seq"], d["to_seq"], d["reason"]) for d in drops] == [
        (7, 4, 10, "max_age_days")
    ]


def test_a_full_disk_keeps_the_service_running_and_loses_nothing_committed_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "MAX_BUFFERED_READINGS", 2_000)
    db = tmp_path / "gateway.db"
    with new_store(db, commit_interval_s=0.05) as store:
        add_readings(store, 100)
        store.flush()
        pages = store.run_write(lambda db: db.execute("PRAGMA page_count").fetchone()[0])
        # SQLite's own limit makes every write fail with SQLITE_FULL
        store.run_write(lambda db: db.execute(f"PRAGMA max_page_count = {pages}"))
        add_readings(store, 5_000, start_value=10)
        assert store.add_event("broadcast_fault", {"reason": "audio_device"}).held
        time.sleep(0.3)
        assert store.write_error == "disk full"
        assert store.add_receipt("a-9", "received", {}).held
        store.run_write(lambda db: db.execute("PRAGMA max_page_count = 1073741823"))
        time.sleep(0.3)
        assert store.write_error is None
        store.flush()
        rows = committed(db)
        loss = stored_events(db, "data_dropped")
    seqs = [seq for seq, _ in rows]
    assert seqs == list(range(1, len(seqs) + 1)), "committed seqs have no gap"
    assert len([k for _, k in rows if k == 0]) == 100 + 2_000
    assert [(d["count"], d["reason"], d["from_seq"]) for d in loss] == [(3_000, "disk_full", None)]
    assert [k for _, k in rows if k != 0] == [1, 2, 1], "held event, receipt, then the loss report"


def test_seq_ranges_merge_and_answer_queries() -> None:
    ranges = SeqRanges([(5, 7), (1, 2), (3, 4), (10, 12)])
    assert ranges.ranges() == [(1, 7), (10, 12)]
    assert ranges.next_missing(1) == 8 and ranges.next_missing(9) == 9
    assert ranges.next_present(8) == 10 and ranges.next_present(13) is None
    assert ranges.count_upto(11) == 9
    ranges.add(8, 9)
    assert ranges.ranges() == [(1, 12)]
    assert 12 in ranges and 13 not in ranges
    assert runs_of([1, 2, 3, 5, 6, 9]) == [(1, 3), (5, 6), (9, 9)]


def stored_events(db: Path, type_: str) -> list[dict[str, object]]:
    """Events of one type as they are stored, read through a read-only connection."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT seq, ts, body FROM outbox WHERE kind = 1 ORDER BY seq")
        events = [json.loads(f'{{"seq":{seq},"ts":{ts},{body}}}') for seq, ts, body in rows]
    finally:
        conn.close()
    return [event for event in events if event["type"] == type_]
