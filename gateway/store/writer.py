"""The store's writer: the one connection that writes, its commits, its thread, a full disk.

Why this module exists: every write to the station's file goes through one connection under
one lock, in as few transactions as possible (each costs an fsync, and flash wears with every
page written). A commit takes everything that waits — the buffered readings
(gateway/store/reading_buffer.py), held events and receipts, the record being added, the state
rows that are due (gateway/store/state_rows.py) and the alert log's pending writes
(gateway/store/alert_log.py) — in one transaction. A background thread commits at the latest
every ``storage.commit_interval_s`` and runs the storage budget (gateway/store/budget.py).

A full disk (or any write error) does not stop the service: readings wait in a bounded memory
buffer (`MAX_BUFFERED_READINGS`; those pushed out are reported by a ``data_dropped`` event),
events and receipts are held (`MAX_HELD_RECORDS`), and everything is committed, in order, as
soon as writing works again. A record gets its seq only then.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from drivers.base import now_ms
from gateway.store import records, state_rows
from gateway.store.alert_log import AlertLog, PendingWrites
from gateway.store.budget import Budget
from gateway.store.database_file import StoreError
from gateway.store.reading_buffer import ChannelRow, ReadingBuffer, ReadingRow
from gateway.store.records import PendingRecord

log = logging.getLogger(__name__)

#: Readings kept in memory while the database cannot be written (about 150 bytes each).
MAX_BUFFERED_READINGS = 100_000
#: Events and receipts held in memory while the database cannot be written.
MAX_HELD_RECORDS = 10_000

T = TypeVar("T")


class Writer:
    """The writing connection of one store and everything it commits. Thread-safe."""

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        *,
        readings: ReadingBuffer,
        state: state_rows.StateRows,
        alerts: AlertLog,
        budget: Budget,
        wake: threading.Event,
        commit_interval_s: float,
    ) -> None:
        self.path = path
        self._db = db
        self._lock = threading.RLock()  # the connection and everything it commits
        self._readings = readings
        self._state = state
        self._alerts = alerts
        self._budget = budget
        self._interval = commit_interval_s
        self._listeners: list[Callable[[], None]] = []
        self._held: list[PendingRecord] = []  # events and receipts waiting for a commit
        self._write_error: str | None = None
        self.closed = False
        self._last_seq = state_rows.last_seq(db)
        self._last_record_seq = state_rows.last_record_seq(db)
        self._wake = wake  # set: commit now (also set by the reading buffer when it fills)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cunxiang-store", daemon=True)

    def start(self) -> None:
        """Start the committer thread."""
        self._thread.start()

    @property
    def last_seq(self) -> int:
        """The highest committed seq (0 for an empty store)."""
        return self._last_seq

    @property
    def last_record_seq(self) -> int:
        """The highest committed seq of an event or receipt."""
        return self._last_record_seq

    @property
    def write_error(self) -> str | None:
        """Why the last write failed (e.g. "disk full"), or None when writing works."""
        return self._write_error

    @property
    def held(self) -> int:
        """Events and receipts waiting for a commit."""
        return len(self._held)

    def run_write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the connection under the lock; StoreError once closed."""
        with self._lock:
            if self.closed:
                raise StoreError(f"{self.path}: the store is closed")
            return work(self._db)

    def hold(self, record: PendingRecord) -> None:
        """Let `record` ride with the next commit, before anything committed later."""
        with self._lock:
            self._held.append(record)

    def wake(self) -> None:
        """Let the committer thread commit now, not at the end of its interval."""
        if not self._wake.is_set():  # Event.set() takes a lock: a tenth of bulk ingest's CPU
            self._wake.set()

    def back_pressure(self, pending: int) -> None:
        """Readings come faster than the committer thread commits: the producer pays for its
        own commit, or, while the disk is full, the buffer stays bounded."""
        if self._write_error is None:
            self.commit(None)  # back-pressure: the producer pays for its own commit
            return
        self._readings.trim(MAX_BUFFERED_READINGS)

    def appended(self, seq: int) -> None:
        """Events the storage budget committed (its data_dropped), up to `seq`: send them."""
        self._last_seq = max(self._last_seq, seq)
        self._last_record_seq = max(self._last_record_seq, seq)
        self._notify()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (from the committing thread) after each commit of new records."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling `listener`."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("store listener failed")

    # --- commit ---------------------------------------------------------------------------------

    def commit(self, record: PendingRecord | None, force_state: bool = False) -> int:
        """Commit buffered readings, held records, `record`, the state rows due and the alert
        log's pending writes in one transaction; the seq of the last record (0: none, or held)."""
        with self._lock:
            if self.closed:
                raise StoreError(f"{self.path}: the store is closed")
            rows, channels = self._readings.take()
            pending = list(self._held)
            if self._readings.lost:
                loss = records.data_dropped(self._readings.lost, None, None, "disk_full", now_ms())
                loss.memory_loss = True
                pending.append(loss)
            if record is not None:
                pending.append(record)
            saved_rows, versions = self._state.changed_rows(
                self._readings.last_readings_row, force_state
            )
            alerts = self._alerts.pending()
            if not (rows or channels or pending or saved_rows or alerts):
                self._readings.committing = 0
                return 0
            try:
                seq = self._write(rows, channels, pending, saved_rows, alerts)
            except sqlite3.Error as exc:
                self._write_failed(exc, rows, channels, pending)
                return 0
            except Exception:
                # A record that cannot be written (a bug, or input no one foresaw) must not take
                # the readings that share its transaction down with it: they wait for the next.
                self._readings.put_back(rows, channels)
                raise
            finally:
                self._readings.committing = 0
            self._state.saved(versions)
            self._alerts.written(alerts)
            self._held = []
            if any(rec.memory_loss for rec in pending):
                self._readings.lost = 0
            if self._write_error is not None:
                log.warning(
                    "%s: writing works again; the records kept in memory are committed", self.path
                )
                self._write_error = None
        if rows or pending:
            self._notify()
        return seq

    def _write(
        self,
        rows: list[ReadingRow],
        channels: list[ChannelRow],
        pending: list[PendingRecord],
        saved_rows: list[tuple[str, str]],
        alerts: PendingWrites,
    ) -> int:
        db = self._db
        seq = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            if channels:
                db.executemany("INSERT INTO channels VALUES (?, ?, ?, ?)", channels)
            if rows:
                db.executemany("INSERT INTO outbox (kind, ts, chan, v) VALUES (0, ?, ?, ?)", rows)
            faults = None
            for rec in pending:
                cursor = db.execute(
                    "INSERT INTO outbox (kind, ts, body) VALUES (?, ?, ?)",
                    (rec.kind, rec.ts, rec.body),
                )
                seq = int(cursor.lastrowid or 0)
                if rec.fault is not None:  # the latest per sensor, for `cunxiang status`
                    faults = self._state.fault(*rec.fault, ts=rec.ts, seq=seq)
            if faults is not None:
                saved_rows = [*saved_rows, faults]
            if saved_rows:
                db.executemany(state_rows.SAVE_STATE, saved_rows)
            alerts.write(db)
            last = state_rows.last_seq(db)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self._last_seq = last
        if pending:
            self._last_record_seq = seq
        return seq

    def _write_failed(
        self,
        exc: sqlite3.Error,
        rows: list[ReadingRow],
        channels: list[ChannelRow],
        pending: list[PendingRecord],
    ) -> None:
        """Keep everything in memory (bounded) and say so once per episode."""
        self._readings.put_back(rows, channels, MAX_BUFFERED_READINGS)
        held = [rec for rec in pending if not rec.memory_loss]
        if len(held) > MAX_HELD_RECORDS:
            log.error(
                "%s: %d events/receipts lost: the disk stays full",
                self.path,
                len(held) - MAX_HELD_RECORDS,
            )
            held = held[-MAX_HELD_RECORDS:]
        self._held = held
        full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)
        reason = "disk full" if full else str(exc)
        if self._write_error is None:
            log.error(
                "%s: cannot write (%s); keeping up to %d readings in memory and retrying",
                self.path,
                reason,
                MAX_BUFFERED_READINGS,
            )
        self._write_error = reason
        if full:
            self._budget.free_sent_space()

    # --- background committer and shutdown ------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self.commit(None)
                self._budget.tick()
            except StoreError:
                break
            except Exception:
                log.exception("%s: the committer thread hit an error; it keeps running", self.path)

    def close(self) -> None:
        """Stop the committer thread, commit what waits, and close the connection."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=10)
        with self._lock:
            try:
                self.commit(None, force_state=True)
            finally:
                self.closed = True
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.close()
