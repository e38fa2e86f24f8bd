"""The outbox's bookkeeping of what the broker has: the backlog figure and the saved acks.

`backlog()` is published in the station's state (docs/protocol.md §3), so a read that
misses records a commit is moving would tell the centre a station with a backlog is empty.
Acknowledged ranges are saved by count as well as by time, so a crash loop during a drain
resends at most a few hundred records per life (docs/storage-and-sync.md).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from gateway.store import state_rows
from gateway.store.outbox import Store
from tests.uplink.conftest import add_readings
from tests.uplink.test_store import new_store


def saved_done(path: Path) -> list[list[int]]:
    """The acknowledged ranges as saved in the file (what a SIGKILLed process leaves)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM state WHERE key = 'done'").fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row else []


class _FinishCommitFirst:
    """A stand-in for the store's ack lock that lets a paused commit finish before it is taken."""

    def __init__(self, lock: Any, release: threading.Event, committer: threading.Thread) -> None:
        self.lock = lock
        self.release = release
        self.committer = committer

    def __enter__(self) -> None:
        self.release.set()
        self.committer.join(5)
        self.lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.lock.__exit__(*exc)


def test_backlog_never_reads_below_the_truth_while_a_commit_moves_readings(
    tmp_path: Path,
) -> None:
    """The interleaving that read 0: a commit ends between the two halves of `backlog()`."""
    store = new_store(tmp_path / "gateway.db", commit_interval_s=60)
    try:
        add_readings(store, 100)
        paused, release = threading.Event(), threading.Event()
        write = store._writer._write

        def slow_write(*args: Any) -> int:
            paused.set()
            release.wait(5)
            return write(*args)

        store._writer._write = slow_write  # type: ignore[method-assign]
        committer = threading.Thread(target=store.flush)
        committer.start()
        assert paused.wait(5), "the commit did not start"
        store._state.lock = _FinishCommitFirst(store._state.lock, release, committer)  # type: ignore[assignment]
        count, _ = store.backlog()
        assert not committer.is_alive()
        assert count >= 100, f"backlog read {count} with 100 readings unsent"
        store._state.lock = store._state.lock.lock  # type: ignore[attr-defined]
        assert store.backlog()[0] == 100
    finally:
        store.close()


def test_acknowledged_ranges_are_saved_by_count_without_waiting_for_the_interval(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gateway.db"
    store = new_store(db, commit_interval_s=30)
    try:
        add_readings(store, 1000)
        store.flush()
        before = saved_done(db)
        store.mark_sent([(1, state_rows.ACK_SAVE_RECORDS - 10)])
        time.sleep(0.3)
        assert saved_done(db) == before, "saved before the count was reached"
        store.mark_sent([(1, state_rows.ACK_SAVE_RECORDS + 10)])
        deadline = time.monotonic() + 3  # far below STATE_SAVE_S and commit_interval_s
        while saved_done(db) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        saved = saved_done(db)
        assert [1, state_rows.ACK_SAVE_RECORDS + 10] in saved, saved
    finally:
        store.close()


def test_a_clean_close_saves_every_acknowledgement(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    store = new_store(db, commit_interval_s=30)
    add_readings(store, 20)
    store.flush()
    store.mark_sent([(1, 7)])
    store.close()
    assert [1, 7] in saved_done(db)
    again = Store(db, station_id=store.station_id, max_mb=64, max_age_days=30, commit_interval_s=1)
    try:
        assert again.backlog()[0] == 13
    finally:
        again.close()
