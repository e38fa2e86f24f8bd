"""The storage budget: what goes when the file passes ``storage.max_mb`` or records pass
``storage.max_age_days``, and the ``data_dropped`` event that says so.

Why this module exists: a station that cannot reach the centre for weeks must not fill its SD
card, and must not lose data silently either. So the budget deletes, in this order: the
oldest records the centre already has (sent: generously, they are safe), the alert log's
bulk (finished entries compacted, ancient ones forgotten: gateway/store/alert_log.py), and
only then the oldest unsent readings — never unsent events or receipts. Every deletion of
unsent readings is reported by one ``data_dropped`` event per reason naming exactly the count
and the seq range (docs/protocol.md §5), in the transaction that deletes them, which also
saves the seqs as needing no more sending. On a new database (``auto_vacuum = INCREMENTAL``)
freed pages go back to the file system.

The committer thread of the store applies ``max_mb`` every second and ``max_age_days`` every
hour (time moves slowly against a 30-day limit, and every run that deletes unsent readings
adds an event).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from drivers.base import now_ms
from gateway.store import alert_log, records
from gateway.store.database_file import StoreError
from gateway.store.seq_ranges import runs_of
from gateway.store.state_rows import SAVE_STATE, StateRows

log = logging.getLogger(__name__)

#: The budget deletes sent records down to this share of ``max_mb`` (so it seldom runs) and
#: unsent readings down to this one (each run costs a data_dropped event; each is data lost).
SENT_LOW_WATER = 0.9
UNSENT_LOW_WATER = 0.98
#: How often the committer thread applies ``max_mb``, and ``max_age_days``.
SIZE_CHECK_S = 1.0
AGE_CHECK_S = 3600.0
#: Rows one budget statement handles at most (keeps memory and lock hold times bounded).
CHUNK_ROWS = 100_000
#: Row sizes (bytes on disk) the budget assumes: small to free sent records, large for unsent.
MIN_ROW_BYTES = 20
MAX_ROW_BYTES = 64
#: Unsent readings deleted per pass at least, and passes per budget run at most.
UNSENT_STEP_ROWS = 256
PASSES = 64
#: Free pages given back to the file system per budget run at most (1 KiB pages), and the
#: fewest worth the writes (flash wears with every page moved).
VACUUM_PAGES = 16_384
VACUUM_MIN_PAGES = 256
DAY_MS = 86_400_000

T = TypeVar("T")


class Outbox(Protocol):
    """The store as the budget sees it (gateway/store/outbox.py `Store`)."""

    path: Path

    @property
    def last_seq(self) -> int: ...

    def run_write(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    def appended(self, seq: int) -> None: ...


@dataclass
class Deletion:
    """What one budget transaction deleted: unsent readings by reason, and their runs."""

    drops: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # count, first, last
    unsent_runs: list[tuple[int, int]] = field(default_factory=list)

    def dropped(self, reason: str, seqs: list[int]) -> None:
        """Unsent readings deleted (ascending seqs)."""
        self.unsent_runs.extend(runs_of(seqs))
        count, low, high = self.drops.get(reason, (0, seqs[0], seqs[-1]))
        self.drops[reason] = (count + len(seqs), min(low, seqs[0]), max(high, seqs[-1]))


Work = Callable[[sqlite3.Connection, Deletion], int]


class Budget:
    """The storage budget of one store. Every run holds the store's writer lock."""

    def __init__(self, outbox: Outbox, state: StateRows, *, max_mb: int, max_age_days: int) -> None:
        self._outbox = outbox
        self._state = state
        self._max_bytes = max_mb * 1024 * 1024
        self._max_age_ms = max_age_days * DAY_MS
        self._trimmers: list[Callable[[sqlite3.Connection], object]] = []
        self._size_checked = 0.0
        self._age_checked = -AGE_CHECK_S
        self._warned = False

    def add_trimmer(self, trim: Callable[[sqlite3.Connection], object]) -> None:
        """Call `trim(db)` inside the budget's transaction when the file is over ``max_mb``
        (and hourly), for a module that keeps a table of its own in the file (ancient
        alert-log entries: gateway/downlink/intake.py; old answers: gateway/downlink/answered.py)."""
        self._trimmers.append(trim)

    def enforce(self) -> None:
        """Apply ``max_age_days`` and ``max_mb`` now."""
        self._run(check_age=True)

    def tick(self) -> None:
        """The committer thread's call: ``max_mb`` every second, ``max_age_days`` hourly."""
        now = time.monotonic()
        if now - self._size_checked < SIZE_CHECK_S:
            return
        self._size_checked = now
        check_age = now - self._age_checked >= AGE_CHECK_S
        if check_age:
            self._age_checked = now
        self._run(check_age)

    def used_bytes(self) -> int:
        """Bytes of the database file in use (free pages and the WAL not counted)."""
        return self._outbox.run_write(_used_bytes)

    def free_sent_space(self) -> None:
        """On a full disk, make room inside the file by deleting the oldest sent records."""
        path = self._outbox.path
        try:
            freed = self._outbox.run_write(self._free_sent_space)
        except (sqlite3.Error, StoreError) as exc:
            log.debug("%s: freeing space failed: %s", path, exc)
            return
        if freed:
            log.warning("%s: disk full; deleted %d sent records to make room", path, freed)

    def _free_sent_space(self, db: sqlite3.Connection) -> int:
        last = self._outbox.last_seq
        rows = max(1000, (last - (_oldest_stored(db) or last)) // 10)
        return self._transaction(db, functools.partial(self._delete_sent, rows, last))

    def _run(self, check_age: bool) -> None:
        try:
            self._outbox.run_write(lambda db: self._apply(db, check_age))
        except StoreError:
            return  # closed
        except sqlite3.Error as exc:
            log.error("%s: the storage budget could not run: %s", self._outbox.path, exc)

    def _apply(self, db: sqlite3.Connection, check_age: bool) -> None:
        if check_age:
            self._expire_old(db)
            self._transaction(db, self._trim_alert_log)
        self._fit_size(db)

    # --- the two limits ---------------------------------------------------------------------

    def _expire_old(self, db: sqlite3.Connection) -> None:
        """Delete records older than ``max_age_days``: sent ones, and unsent readings."""
        now = now_ms()
        if now < records.SANE_EPOCH_MS:
            return  # the clock was never set: nothing can be judged old
        oldest = _oldest_stored(db)
        if oldest is None:
            return
        row = db.execute(
            "SELECT seq FROM outbox WHERE seq >= ? AND ts >= ? ORDER BY seq LIMIT 1",
            (oldest, now - self._max_age_ms),
        ).fetchone()
        upto = (int(row[0]) - 1) if row else self._outbox.last_seq
        if upto < oldest:
            return
        # Readings stamped by an unset clock carry no trustworthy age (a Pi without a clock
        # battery boots in 1970): only the size budget may delete them while unsent.
        extra = f" AND ts >= {records.SANE_EPOCH_MS}"
        unsynced = [
            str(chan)
            for (chan,) in db.execute(
                "SELECT id FROM channels WHERE instr(flags, 'clock_unsynced') > 0"
            )
        ]
        if unsynced:
            extra += f" AND chan NOT IN ({','.join(unsynced)})"

        def work(db: sqlite3.Connection, deletion: Deletion) -> int:
            sent = self._delete_sent(None, upto, db, deletion)
            return sent + self._drop_unsent(db, deletion, None, upto, "max_age_days", extra)

        self._transaction(db, work)

    def _fit_size(self, db: sqlite3.Connection) -> None:
        """Delete down to ``max_mb``: sent records (generously), then unsent readings (sparingly).

        SQLite cannot count rows cheaply, so the rows to delete are estimated from the bytes to
        free: generously for sent records (assuming small rows: they are at the centre already),
        sparingly for unsent readings (assuming large rows, measuring again after each step,
        all in one transaction that reports them in one ``data_dropped`` event).
        """
        for _ in range(PASSES):
            used = _used_bytes(db)
            if used <= self._max_bytes:
                self._warned = False
                _give_back_free_pages(db)
                return
            if self._transaction(db, self._trim_alert_log):
                continue
            want = (used - int(self._max_bytes * SENT_LOW_WATER)) // MIN_ROW_BYTES + 1
            last = self._outbox.last_seq
            if self._transaction(db, functools.partial(self._delete_sent, want, last)):
                continue
            target = int(self._max_bytes * UNSENT_LOW_WATER)
            if not self._transaction(db, functools.partial(self._drop_to_fit, target)):
                if not self._warned:
                    log.error(
                        "%s: over storage.max_mb (%d bytes used) but only unsent events and "
                        "receipts are left, and those are never deleted",
                        self._outbox.path,
                        used,
                    )
                    self._warned = True
                return

    def _trim_alert_log(self, db: sqlite3.Connection, _: Deletion) -> int:
        """Compact finished alerts, then the registered trims; 1 if that freed space."""
        before = _used_bytes(db)
        alert_log.compact_finished(db)
        for trim in self._trimmers:
            trim(db)
        return int(_used_bytes(db) < before)

    def _drop_to_fit(self, target: int, db: sqlite3.Connection, deletion: Deletion) -> int:
        """Drop the oldest unsent readings in steps until `target` bytes hold."""
        dropped = 0
        for _ in range(PASSES):
            used = _used_bytes(db)
            if used <= target:
                break
            step = max(UNSENT_STEP_ROWS, (used - target) // MAX_ROW_BYTES + 1)
            count = self._drop_unsent(db, deletion, step, self._outbox.last_seq, "max_mb", "")
            if not count:
                break
            dropped += count
        return dropped

    # --- deleting ---------------------------------------------------------------------------

    def _transaction(self, db: sqlite3.Connection, work: Work) -> int:
        """Run `work` in one transaction that also saves the seqs it made unsendable and
        reports what it dropped; what `work` returns.

        Dropped seqs reach the in-memory ranges only after COMMIT: if the transaction fails,
        those readings are still stored and must still be sent.
        """
        deletion = Deletion()
        reported: list[int] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            deleted = work(db, deletion)
            for reason, (count, first, last) in deletion.drops.items():
                reported.append(self._report_drop(db, count, first, last, reason))
            if deletion.unsent_runs:
                db.execute(SAVE_STATE, self._state.sent_row(deletion.unsent_runs))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self._state.gone(deletion.unsent_runs)
        if reported:
            self._outbox.appended(max(reported))
        return deleted

    def _delete_sent(self, want: int | None, upto: int, db: sqlite3.Connection, _: Deletion) -> int:
        """Delete up to `want` (None: all) acknowledged records with seq <= upto, oldest first."""
        oldest = _oldest_stored(db)
        if oldest is None:
            return 0
        deleted = 0
        for lo, hi in self._state.sent_ranges():
            if hi < oldest:
                continue
            if lo > upto or (want is not None and deleted >= want):
                break
            start, end = max(lo, oldest), min(hi, upto)
            while start <= end and (want is None or deleted < want):
                row = db.execute(
                    "SELECT seq FROM outbox WHERE seq >= ? ORDER BY seq LIMIT 1", (start,)
                ).fetchone()
                if row is None or row[0] > end:
                    break
                start = int(row[0])
                stop = min(end, start + CHUNK_ROWS - 1)
                if want is not None:
                    stop = min(stop, start + (want - deleted) - 1)
                cursor = db.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (start, stop))
                deleted += cursor.rowcount
                start = stop + 1
        return deleted

    def _drop_unsent(
        self,
        db: sqlite3.Connection,
        deletion: Deletion,
        want: int | None,
        upto: int,
        reason: str,
        extra: str,
    ) -> int:
        """Delete up to `want` (None: all) unsent readings with seq <= upto, oldest first,
        recording them in `deletion`. Events and receipts are never deleted here."""
        dropped = 0
        after = 0
        last = self._outbox.last_seq
        while want is None or dropped < want:
            span = self._state.unsent_span(after, last)
            if span is None or span[0] > upto:
                break
            first, end = span[0], min(span[1], upto)
            limit = CHUNK_ROWS if want is None else min(CHUNK_ROWS, want - dropped)
            seqs = [
                int(row[0])
                for row in db.execute(
                    f"SELECT seq FROM outbox WHERE seq BETWEEN ? AND ? AND kind = 0{extra} "
                    "ORDER BY seq LIMIT ?",
                    (first, end, limit),
                )
            ]
            if seqs:
                db.execute(
                    f"DELETE FROM outbox WHERE seq BETWEEN ? AND ? AND kind = 0{extra}",
                    (seqs[0], seqs[-1]),
                )
                deletion.dropped(reason, seqs)
                dropped += len(seqs)
            after = seqs[-1] if len(seqs) == limit else end
        return dropped

    def _report_drop(
        self, db: sqlite3.Connection, count: int, first: int, last: int, reason: str
    ) -> int:
        """Add the data_dropped event (in the current transaction); its seq."""
        event = records.data_dropped(count, first, last, reason, now_ms())
        cursor = db.execute(
            "INSERT INTO outbox (kind, ts, body) VALUES (?, ?, ?)",
            (event.kind, event.ts, event.body),
        )
        log.warning(
            "%s: storage budget (%s) deleted %d unsent readings between seq %d and %d",
            self._outbox.path,
            reason,
            count,
            first,
            last,
        )
        return int(cursor.lastrowid or 0)


def _used_bytes(db: sqlite3.Connection) -> int:
    """Bytes in use, as this connection sees them (also inside a transaction)."""
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def _oldest_stored(db: sqlite3.Connection) -> int | None:
    row = db.execute("SELECT min(seq) FROM outbox").fetchone()
    return None if row[0] is None else int(row[0])


def _give_back_free_pages(db: sqlite3.Connection) -> int:
    """On an ``auto_vacuum = INCREMENTAL`` file, return free pages to the file system."""
    if int(db.execute("PRAGMA auto_vacuum").fetchone()[0]) != 2:
        return 0
    free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
    if free < VACUUM_MIN_PAGES:
        return 0
    db.execute(f"PRAGMA incremental_vacuum({min(free, VACUUM_PAGES)})").fetchall()
    return min(free, VACUUM_PAGES)
