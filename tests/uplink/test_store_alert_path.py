"""The store's part of the way to the first sound: fewer commits, nothing durable lost.

docs/performance.md (per-alert CPU): the alert-log entry and its `received` receipt share one
transaction; unfinished alert states and a deferred receipt ride with the next commit. What a
restart sees (the alert log, the outbox) is checked by opening the database again, as the next
life of the service would.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from gateway.store.alert_records import AlertRecord
from gateway.store.outbox import Store
from tests.uplink.conftest import STATION_ID

RED = AlertRecord(kind="local", level="red")


def new_store(path: Path, interval_s: float = 60.0) -> Store:
    return Store(
        path, station_id=STATION_ID, max_mb=64, max_age_days=30, commit_interval_s=interval_s
    )


def outbox(path: Path) -> list[tuple[int, dict[str, object]]]:
    """(seq, fields) of every committed event and receipt, as another process reads them."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT seq, body FROM outbox WHERE kind > 0 ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [(int(seq), json.loads("{" + body + "}")) for seq, body in rows]


def alert_states(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT id, state FROM alerts").fetchall())
    finally:
        conn.close()


def test_alert_entry_and_received_receipt_are_committed_together(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    with new_store(db) as store:
        assert store.alerts.remember("a-1", RED, received={}) is True
        # Committed before it returned: visible to another connection now.
        assert alert_states(db) == {"a-1": "received"}
        assert [body for _, body in outbox(db)] == [{"alert": "a-1", "status": "received"}]
        # A replay is refused and writes no second receipt.
        assert store.alerts.remember("a-1", RED, received={}) is False
        assert len(outbox(db)) == 1
        unsynced = {"clock_unsynced": True}
        assert (
            store.alerts.remember("a-2", AlertRecord(kind="local", level="blue"), received=unsynced)
            is True
        )
        assert outbox(db)[-1][1] == {"alert": "a-2", "status": "received", "clock_unsynced": True}
    with new_store(db) as store:
        assert store.alerts.remember("a-1", AlertRecord(kind="local"), received={}) is False
        assert [a.id for a in store.alerts.unfinished()] == ["a-1", "a-2"]


def test_unfinished_state_rides_with_the_next_commit_finished_one_at_once(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    with new_store(db) as store:
        store.alerts.remember("a-1", RED, received={})
        store.alerts.set_state("a-1", "queued")
        assert alert_states(db) == {"a-1": "received"}  # not yet committed ...
        assert store.alerts.entry("a-1").state == "queued"  # type: ignore[union-attr]
        store.add_receipt("a-1", "playing", {})
        assert alert_states(db) == {"a-1": "queued"}  # ... it went with the receipt
        store.alerts.set_state("a-1", "playing")
        store.alerts.set_state("a-1", "played")  # finished: committed now, the pending one dropped
        assert alert_states(db) == {"a-1": "played"}
        store.flush()
        assert alert_states(db) == {"a-1": "played"}


def test_deferred_receipt_keeps_its_place_in_seq_order(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    with new_store(db) as store:
        store.alerts.remember("a-1", RED, received={})
        assert store.add_receipt("a-1", "queued", {}, defer=True).seq is None
        assert [b["status"] for _, b in outbox(db)] == ["received"]
        store.add_receipt("a-1", "playing", {})
        rows = outbox(db)
        assert [b["status"] for _, b in rows] == ["received", "queued", "playing"]
        assert [seq for seq, _ in rows] == sorted(seq for seq, _ in rows)


def test_deferred_receipt_is_committed_by_the_committer_when_nothing_follows(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gateway.db"
    with new_store(db, interval_s=0.1) as store:
        store.alerts.remember("a-1", RED, received={})
        store.add_receipt("a-1", "queued", {}, defer=True)
        store.alerts.set_state("a-1", "queued")
        deadline = 50
        while len(outbox(db)) < 2 and deadline:
            deadline -= 1
            time.sleep(0.05)
        assert [b["status"] for _, b in outbox(db)] == ["received", "queued"]
        assert alert_states(db) == {"a-1": "queued"}
