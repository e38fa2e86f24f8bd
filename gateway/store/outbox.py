"""The station's durable outbox: every reading, event and receipt stays here until the centre has it.

Why this module exists: a village station loses its uplink for hours or days (a cut fibre, a
county broker restart, a power cut) and must still deliver every record afterwards, once, in
order, with a ``seq`` the centre can check for gaps (docs/protocol.md §4). `Store` is that
outbox, one SQLite file in WAL mode, and what the service, the uplink and the status ask of it:

* Readings are buffered in memory and committed in groups, at the latest every
  ``storage.commit_interval_s``, so ingest costs a list append; events and receipts are
  committed at once (gateway/store/writer.py). A record is visible to the uplink only once
  committed.
* ``seq`` is the outbox row id (AUTOINCREMENT: never reused, also after a crash or after the
  newest rows were deleted). The outbox is append-only: what the broker acknowledged is kept
  as a handful of seq ranges (gateway/store/seq_ranges.py, gateway/store/state_rows.py).

Its parts: the file and its lock (gateway/store/database_file.py), the records and their JSON
(gateway/store/records.py), the storage budget (`Store.budget`, gateway/store/budget.py) and
the alert log (`Store.alerts`, gateway/store/alert_log.py). The uplink reads through an
`OutboxReader` (gateway/store/reader.py) in its own thread and calls `Store.mark_sent` from its
PUBACK callback; ``cunxiang status`` reads the file read-only (gateway/status/database.py).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from drivers.base import now_ms
from gateway.store import records, state_rows
from gateway.store.alert_log import AlertLog
from gateway.store.budget import Budget
from gateway.store.database_file import (
    StoreError,
    open_reader,
    open_writer,
    release_lock,
    take_lock,
)
from gateway.store.reader import OutboxReader
from gateway.store.reading_buffer import AddReading, ReadingBuffer
from gateway.store.records import Channel, OutboxRecord, Stored
from gateway.store.writer import Writer

if TYPE_CHECKING:
    from gateway.config.model import Config

T = TypeVar("T")


def open_store(config: Config) -> Store:
    """The station's store as the config sets it up (``station.id``, ``[storage]``)."""
    storage = config.storage
    return Store(
        storage.path,
        station_id=config.station.id,
        max_mb=storage.max_mb,
        max_age_days=storage.max_age_days,
        commit_interval_s=storage.commit_interval_s,
    )


class Store:
    """The outbox, the alert log and the status record of one station, in one SQLite file.

    Thread-safe. `add_reading` is cheap and never blocks on disk; `add_event`,
    `add_receipt` and the alert log (`alerts`) commit before they return.
    """

    #: Buffer one reading: `ReadingBuffer.add` itself (ingest's hot path: no call in between).
    add_reading: AddReading

    def __init__(
        self,
        path: Path,
        *,
        station_id: str,
        max_mb: int,
        max_age_days: int,
        commit_interval_s: float,
    ) -> None:
        self.path = Path(path)
        self.station_id = station_id
        self._read_lock = threading.Lock()  # the connection for queries from the caller's thread
        self._wake = threading.Event()  # the committer thread's: commit now
        self._lockfile = take_lock(self.path)
        try:
            db = open_writer(self.path, station_id)
            try:
                self._load(db)
                self._reader_db = open_reader(self.path)
            except BaseException:
                db.close()
                raise
        except BaseException:
            release_lock(self._lockfile)
            raise
        self.add_reading = self._readings.add
        self.alerts = AlertLog(self)
        self.budget = Budget(self, self._state, max_mb=max_mb, max_age_days=max_age_days)
        self._writer = Writer(
            db,
            self.path,
            readings=self._readings,
            state=self._state,
            alerts=self.alerts,
            budget=self.budget,
            wake=self._wake,
            commit_interval_s=commit_interval_s,
        )
        self._writer.start()

    def _load(self, db: sqlite3.Connection) -> None:
        """What the file holds: its state rows, its channels, the last values."""
        try:
            state = state_rows.read_state(db)
            sent = state_rows.load_sent(db, state, state_rows.last_seq(db))
            self._state = state_rows.StateRows(state, sent)
            self._readings = ReadingBuffer(
                db,
                state,
                wake=self._wake,
                back_pressure=lambda pending: self._writer.back_pressure(pending),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: is damaged ({exc}); it was left untouched") from None

    # --- ingest ---------------------------------------------------------------------------------

    def add_event(self, type_: str, fields: Mapping[str, object], ts: int | None = None) -> Stored:
        """Commit one event (docs/protocol.md §5) now: `Stored` with its seq, or held in memory.

        Held means the database cannot be written right now (disk full): the event is kept
        and committed, in order, as soon as writing works again.
        """
        return self._stored(records.event(type_, fields, now_ms() if ts is None else ts))

    def add_receipt(
        self,
        alert_id: str,
        status: str,
        fields: Mapping[str, object],
        ts: int | None = None,
        *,
        defer: bool = False,
    ) -> Stored:
        """Commit one alert receipt (docs/protocol.md §7) now; `Stored` as for `add_event`.

        With `defer` it rides with the next commit instead (the next receipt or event, or the
        committer's within ``commit_interval_s``), before anything committed later; it has no
        seq yet (`Stored(None)`): for a step whose receipt may reach the centre a moment later.
        """
        record = records.receipt(alert_id, status, fields, now_ms() if ts is None else ts)
        if defer:
            self._writer.hold(record)
            return Stored(None)
        return self._stored(record)

    def _stored(self, record: records.PendingRecord) -> Stored:
        seq = self._writer.commit(record)
        return Stored(seq if seq > 0 else None)

    def flush(self) -> None:
        """Commit buffered readings and pending state now (also done by `close`)."""
        self._writer.commit(None, force_state=True)

    @property
    def write_error(self) -> str | None:
        """Why the last write failed (e.g. "disk full"), or None when writing works."""
        return self._writer.write_error

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (from the committing thread) after each commit of new records."""
        self._writer.add_listener(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling `listener`."""
        self._writer.remove_listener(listener)

    def appended(self, seq: int) -> None:
        """Events the storage budget committed (its data_dropped), up to `seq`: send them."""
        self._writer.appended(seq)

    # --- for the parts that keep tables of their own in the file --------------------------------

    def run_write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the writer connection under the store's lock; sqlite3.Error passes on.

        For the alert log, the budget and gateway/downlink/answered.py. Statements commit one
        by one unless `work` opens a transaction. StoreError once the store is closed.
        """
        return self._writer.run_write(work)

    def run_read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the store's reader connection (committed data only)."""
        with self._read_lock:
            return work(self._reader_db)

    # --- state rows ----------------------------------------------------------------------------

    def mark_sent(self, runs: Iterable[tuple[int, int]]) -> None:
        """The broker acknowledged these seqs (PUBACK): they need no more sending."""
        if self._state.mark_sent(runs):
            self._writer.wake()  # the committer saves them now, not at the end of STATE_SAVE_S

    def set_status(self, **fields: object) -> None:
        """Record status fields for `cunxiang status` (persisted with the next commit)."""
        self._state.set_status(fields)

    def status(self) -> dict[str, object]:
        """The status fields recorded so far."""
        return self._state.status()

    def faults(self) -> dict[str, dict[str, object]]:
        """The latest sensor_fault / sensor_ok per sensor: state, ts, seq and reason."""
        return self._state.faults()

    def state_value(self, key: str) -> str | None:
        """One row of the `state` table (e.g. the time floor), or None."""
        row = self.run_read(
            lambda db: db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        )
        return None if row is None else str(row[0])

    def save_state_value(self, key: str, value: str) -> None:
        """Write one row of the `state` table; committed before it returns."""
        self.run_write(lambda db: db.execute(state_rows.SAVE_STATE, (key, value)))

    # --- what is stored and unsent --------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The highest committed seq (0 for an empty store)."""
        return self._writer.last_seq

    @property
    def last_record_seq(self) -> int:
        """The highest committed seq of an event or receipt."""
        return self._writer.last_record_seq

    def is_sent(self, seq: int) -> bool:
        """True if `seq` needs no more sending (acknowledged or deleted)."""
        return self._state.is_sent(seq)

    def unsent_span(self, after: int) -> tuple[int, int] | None:
        """The first run of seqs > `after` that still needs sending, or None."""
        return self._state.unsent_span(after, self._writer.last_seq)

    def backlog(self) -> tuple[int, int | None]:
        """Records not yet acknowledged by the broker (buffered ones too), and the oldest ts.

        Never below the truth: the buffered count is read before ``last_seq``, so readings a
        commit moves from the buffer to the table meanwhile are counted twice, never not at
        all (a commit raises ``last_seq`` before it stops counting them as buffered).
        """
        waiting, oldest = self._readings.waiting()
        buffered = waiting + self._writer.held
        count, first = self._state.unsent(self._writer.last_seq)
        oldest_stored = None
        if count > 0:
            oldest_stored = self.run_read(lambda db: state_rows.first_ts(db, first))
        known = [ts for ts in (oldest, oldest_stored) if ts is not None]
        return max(0, count) + buffered, (min(known) if known else None)

    def stored_range(self, from_seq: int, to_seq: int) -> tuple[int, int] | None:
        """The first and last seq still stored within from_seq..to_seq, or None."""
        row = self.run_read(
            lambda db: db.execute(
                "SELECT min(seq), max(seq) FROM outbox WHERE seq BETWEEN ? AND ?",
                (from_seq, to_seq),
            ).fetchone()
        )
        return None if row[0] is None else (int(row[0]), int(row[1]))

    def records(self, from_seq: int, to_seq: int, limit: int | None = None) -> list[OutboxRecord]:
        """Records still stored with from_seq <= seq <= to_seq, sent or not, in seq order."""
        return self.run_read(
            lambda db: records.stored_records(
                db, self._readings.channels(), from_seq, to_seq, limit or -1
            )
        )

    def recent_receipts(self, n: int) -> list[dict[str, object]]:
        """The `n` newest committed receipts (docs/protocol.md §7, with seq and ts), newest first."""
        return self.run_read(lambda db: records.recent_receipts(db, n))

    def channels(self) -> dict[int, Channel]:
        """How the readings of each channel render (a copy, for `OutboxReader`)."""
        return self._readings.channels()

    def reader(self) -> OutboxReader:
        """A reader with its own connection, for the uplink's thread."""
        return OutboxReader(self)

    # --- programme schedules (docs/protocol.md §10) ---------------------------------------------

    def save_programme(self, key: str, schedule_id: str, version: int, payload: str) -> None:
        """Keep a schedule's newest version (withdrawn ones too); committed before it returns."""
        self.run_write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO programmes VALUES (?, ?, ?, ?, ?)",
                (key, schedule_id, version, now_ms(), payload),
            )
        )

    def programmes(self) -> list[tuple[str, str, int, str]]:
        """Every kept schedule as (key, id, version, payload), oldest first."""
        rows = self.run_read(
            lambda db: db.execute(
                "SELECT key, id, version, payload FROM programmes ORDER BY received_ts, rowid"
            ).fetchall()
        )
        return [(str(k), str(i), int(v), str(p)) for k, i, v, p in rows]

    # --- shutdown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is buffered, stop the committer thread and close the file."""
        if self._writer.closed:
            return
        try:
            self._writer.close()
        finally:
            with self._read_lock, contextlib.suppress(sqlite3.Error):
                self._reader_db.close()
            release_lock(self._lockfile)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
