"""The alert log: every broadcast and command the station accepted, once, and where it is.

Why this module exists: a restart must resume an unfinished broadcast, and a replayed id must
never play twice (docs/protocol.md §6.1, §9), so every accepted alert, local alarm, programme
item, microphone use and command is logged (table ``alerts``, gateway/store/schema.py) before
anything plays, under its log id, with its state (received, queued, playing, played, ...).
The entry's record is an `AlertRecord` (gateway/store/alert_records.py): a central alert's
signed payload while it is unfinished, a compact summary once it is done.

The log lives in the store's file and commits with it: an alert's ``received`` receipt rides
in the same transaction as its entry, and an unfinished state (queued, playing) rides with the
next commit — one fsync less each on the way to the first sound (docs/performance.md). While
the disk is full, new entries wait in memory and are still de-duplicated. The storage budget
compacts finished entries and forgets ancient ones (`compact_finished`, `prune`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from drivers.base import now_ms
from gateway.store import records
from gateway.store.alert_records import FINAL_STATES, AlertRecord, LogEntry
from gateway.store.database_file import StoreError
from gateway.store.records import SANE_EPOCH_MS

log = logging.getLogger(__name__)

#: Log states of a broadcast that has not finished: after a restart it plays again.
UNFINISHED_STATES = ("received", "queued", "playing", "interrupted")

T = TypeVar("T")
#: An entry's columns after its id: (state, received_ts, updated_ts, record JSON).
Row = tuple[str, int, int, str]


class LogHost(Protocol):
    """What the alert log needs of the store it lives in (gateway/store/outbox.py `Store`)."""

    path: Path

    def run_write(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    def run_read(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    def add_receipt(
        self, alert_id: str, status: str, fields: Mapping[str, object]
    ) -> records.Stored: ...


@dataclass(frozen=True, slots=True)
class PendingWrites:
    """What the next commit writes for the log: new entries, and unfinished states."""

    entries: dict[str, Row]
    states: dict[str, tuple[str, int]]

    def __bool__(self) -> bool:
        return bool(self.entries or self.states)

    def write(self, db: sqlite3.Connection) -> None:
        """Inside the commit's transaction."""
        if self.entries:
            db.executemany(
                "INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?)",
                [(key, *row) for key, row in self.entries.items()],
            )
        if self.states:
            db.executemany(
                "UPDATE alerts SET state = ?, updated_ts = ? WHERE id = ?",
                [(state, ts, key) for key, (state, ts) in self.states.items()],
            )


class AlertLog:
    """The alert log of one store. Thread-safe."""

    def __init__(self, store: LogHost) -> None:
        self._store = store
        self._lock = threading.Lock()  # the two dicts below; taken inside the store's lock
        self._unsaved: dict[str, Row] = {}  # entries the next commit writes
        self._states: dict[str, tuple[str, int]] = {}  # unfinished states, likewise

    def remember(
        self,
        alert_id: str,
        record: AlertRecord,
        received: Mapping[str, object] | None = None,
        receipt_id: str | None = None,
    ) -> bool:
        """Log an accepted alert; False if this id was seen before (also before a restart).

        Committed before it returns. If the disk is full the entry is kept in memory (and
        still de-duplicated) until it can be written. With `received`, the alert's
        ``received`` receipt (docs/protocol.md §7, these fields, naming `receipt_id` or else
        `alert_id`) is committed in the same transaction: one fsync on the way to the first
        sound instead of two (docs/performance.md).
        """
        now = now_ms()
        row: Row = ("received", now, now, record.to_json())
        if received is None:
            return self._store.run_write(lambda db: self._insert(db, alert_id, row))
        named = receipt_id or alert_id
        records.receipt(named, "received", received, now)  # refused before anything is logged

        def with_receipt(db: sqlite3.Connection) -> bool:
            if not self._log_unsaved(db, alert_id, row):
                return False
            self._store.add_receipt(named, "received", received)  # writes the entry too
            return True

        return self._store.run_write(with_receipt)

    def _insert(self, db: sqlite3.Connection, alert_id: str, row: Row) -> bool:
        if alert_id in self._unsaved:
            return False
        try:
            cursor = db.execute(
                "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?)", (alert_id, *row)
            )
        except sqlite3.Error as exc:
            return self._keep_in_memory(db, alert_id, row, exc)
        return cursor.rowcount == 1

    def _log_unsaved(self, db: sqlite3.Connection, alert_id: str, row: Row) -> bool:
        """Add a new entry for the next commit; False if the id is known."""
        if alert_id in self._unsaved:
            return False
        try:
            known = db.execute("SELECT 1 FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        except sqlite3.Error as exc:
            return self._keep_in_memory(db, alert_id, row, exc)
        if known:
            return False
        with self._lock:
            self._unsaved[alert_id] = row
        return True

    def _keep_in_memory(
        self, db: sqlite3.Connection, alert_id: str, row: Row, exc: sqlite3.Error
    ) -> bool:
        known = db.execute("SELECT 1 FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if known:
            return False
        log.error(
            "%s: cannot log alert %r (%s); keeping it in memory", self._store.path, alert_id, exc
        )
        with self._lock:
            self._unsaved[alert_id] = row
        return True

    def set_state(self, alert_id: str, state: str) -> None:
        """Record where an alert's broadcast is (queued, playing, played, …).

        A finished state (played, failed, cancelled, ...) is committed now, and the entry
        becomes compact in the same commit. An unfinished one (`UNFINISHED_STATES`) rides with
        the next commit — the receipt that goes with it, or the committer's within
        ``commit_interval_s``: a restart resumes every unfinished alert alike, so a crash
        before that commit loses nothing, and the way to the first sound saves an fsync per
        step (docs/performance.md).
        """
        now = now_ms()
        with self._lock:
            unsaved = self._unsaved.get(alert_id)
            if unsaved is not None:
                text = unsaved[3]
                if state in FINAL_STATES:
                    text = AlertRecord.from_json(text).compacted().to_json()
                self._unsaved[alert_id] = (state, unsaved[1], now, text)
                return
            if state in UNFINISHED_STATES:
                self._states[alert_id] = (state, now)
                return
            self._states.pop(alert_id, None)
        try:
            changed = self._store.run_write(lambda db: _finish(db, alert_id, state, now))
        except (sqlite3.Error, StoreError) as exc:
            log.error("%s: cannot update alert %r: %s", self._store.path, alert_id, exc)
            return
        if not changed:
            log.warning("%s: no alert %r in the log", self._store.path, alert_id)

    # --- reading -----------------------------------------------------------------------------

    def unfinished(self) -> list[LogEntry]:
        """Entries whose broadcast has not finished (`UNFINISHED_STATES`), oldest first."""
        marks = ",".join("?" * len(UNFINISHED_STATES))
        entries = self._select(
            f"SELECT * FROM alerts WHERE state IN ({marks}) ORDER BY received_ts, rowid",
            list(UNFINISHED_STATES),
        )
        return entries + [e for e in self._unsaved_entries() if e.state in UNFINISHED_STATES]

    def entry(self, alert_id: str) -> LogEntry | None:
        """The entry of `alert_id`, or None if the id was never seen."""
        for entry in self._unsaved_entries():
            if entry.id == alert_id:
                return entry
        found = self._select("SELECT * FROM alerts WHERE id = ?", [alert_id])
        return found[0] if found else None

    def recent(self, n: int) -> list[LogEntry]:
        """The `n` most recently received entries, newest first."""
        entries = self._unsaved_entries()[::-1]
        pending = self._states.copy()  # atomic; a commit may hold the lock through its fsync
        entries += self._store.run_read(lambda db: recent(db, n, pending))
        return entries[:n]

    def _unsaved_entries(self) -> list[LogEntry]:
        # No lock (a commit may hold it): copying a dict is atomic in CPython.
        unsaved = dict(self._unsaved)
        return [LogEntry.from_row((key, *row)) for key, row in unsaved.items()]

    def _select(self, sql: str, params: list[object]) -> list[LogEntry]:
        rows = self._store.run_read(lambda db: db.execute(sql, params).fetchall())
        pending = self._states.copy()  # atomic; a commit may hold the lock through its fsync
        return [LogEntry.from_row(row, pending.get(str(row[0]))) for row in rows]

    # --- with the store's commits --------------------------------------------------------------

    def pending(self) -> PendingWrites:
        """What the next commit must write (see `PendingWrites.write`)."""
        with self._lock:
            return PendingWrites(dict(self._unsaved), dict(self._states))

    def written(self, writes: PendingWrites) -> None:
        """`writes` are committed: forget what has not changed since."""
        with self._lock:
            for key, row in writes.entries.items():
                if self._unsaved.get(key) == row:
                    del self._unsaved[key]
            for key, value in writes.states.items():
                if self._states.get(key) == value:
                    del self._states[key]


def recent(
    db: sqlite3.Connection, n: int, pending: Mapping[str, tuple[str, int]] | None = None
) -> list[LogEntry]:
    """The `n` most recently received entries in the file, newest first (with `pending`,
    the unfinished states a commit has yet to write)."""
    rows = db.execute(
        "SELECT * FROM alerts ORDER BY received_ts DESC, rowid DESC LIMIT ?", (n,)
    ).fetchall()
    pending = pending or {}
    return [LogEntry.from_row(row, pending.get(str(row[0]))) for row in rows]


def _finish(db: sqlite3.Connection, alert_id: str, state: str, now: int) -> bool:
    """Set a state that is not unfinished; a finished entry keeps a compact record."""
    compact = _compacted(db, alert_id) if state in FINAL_STATES else None
    if compact is None:
        cursor = db.execute(
            "UPDATE alerts SET state = ?, updated_ts = ? WHERE id = ?", (state, now, alert_id)
        )
    else:
        cursor = db.execute(
            "UPDATE alerts SET state = ?, updated_ts = ?, record = ? WHERE id = ?",
            (state, now, compact, alert_id),
        )
    return cursor.rowcount > 0


def _compacted(db: sqlite3.Connection, alert_id: str) -> str | None:
    """The compact record text of an entry, or None if it is compact already (or absent)."""
    row = db.execute("SELECT record FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        return None
    record = AlertRecord.from_json(str(row[0]))
    return None if record.compact else record.compacted().to_json()


# --- for the storage budget (gateway/store/budget.py) -----------------------------------------


def prune_horizon_ms(floor_ms: int, max_alert_lifetime_s: int) -> int:
    """Entries received before this may leave the log (docs/protocol.md §6.1): any alert
    sent before it expired by the time floor at the latest, so a replay can only be
    ``expired``; a command's lifetime is far shorter still."""
    return floor_ms - max_alert_lifetime_s * 1000


def prune(db: sqlite3.Connection, floor_ms: int, max_alert_lifetime_s: int) -> int:
    """Delete finished entries received before the prune horizon; the number deleted.

    Only entries with a trustworthy received time (the clock was set), and for alerts only
    once their effective expiry is at or before the floor. Unfinished ones stay whatever
    their age (a restart still owes them a receipt), and so does the newest local
    broadcast (its number must not be used again). The intake, which owns the time floor,
    registers this with the budget (gateway/downlink/intake.py).
    """
    states = ",".join("?" * len(FINAL_STATES))
    horizon = prune_horizon_ms(floor_ms, max_alert_lifetime_s)
    cursor = db.execute(
        f"DELETE FROM alerts WHERE state IN ({states}) "
        "AND received_ts >= ? AND received_ts < ? "
        "AND (id LIKE 'cmd:%' OR coalesce(json_extract(record, '$.expires_ms'), 0) <= ?) "
        "AND id != coalesce((SELECT id FROM alerts WHERE id LIKE 'local:%' "
        "ORDER BY received_ts DESC, rowid DESC LIMIT 1), '')",
        (*sorted(FINAL_STATES), SANE_EPOCH_MS, horizon, floor_ms),
    )
    return int(cursor.rowcount)


def compact_finished(db: sqlite3.Connection) -> int:
    """Compact every finished entry still holding its payload (e.g. from an older release)."""
    states = ",".join("?" * len(FINAL_STATES))
    ids = [
        str(row[0])
        for row in db.execute(
            f"SELECT id FROM alerts WHERE state IN ({states}) AND record NOT LIKE '%\"compact\":true%'",
            sorted(FINAL_STATES),
        )
    ]
    for alert_id in ids:
        compact = _compacted(db, alert_id)
        if compact is not None:
            db.execute("UPDATE alerts SET record = ? WHERE id = ?", (compact, alert_id))
    return len(ids)


def highest_local_number(db: sqlite3.Connection) -> int:
    """The highest n of the ``local:<rule>:<n>`` ids in the log (0 if none)."""
    highest = 0
    for (alert_id,) in db.execute("SELECT id FROM alerts WHERE id LIKE 'local:%'"):
        tail = str(alert_id).rsplit(":", 1)[-1]
        if tail.isdigit():
            highest = max(highest, int(tail))
    return highest
