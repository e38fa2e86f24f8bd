"""The station's durable outbox: every reading, event and receipt stays here until the centre has it.

Why this module exists: a village station loses its uplink for hours or days (a cut fibre, a
county broker restart, a power cut) and must still deliver every record afterwards, once, in
order, with a ``seq`` the centre can check for gaps (docs/protocol.md §4). This is one SQLite file in
WAL mode:

* Readings are buffered in memory and committed in groups, at the latest every
  ``storage.commit_interval_s`` (a background thread does it), so ingest costs a list append.
  Events and receipts are committed at once, together with any buffered readings.
* ``seq`` is the outbox row id (AUTOINCREMENT: never reused, also after a crash or after the
  newest rows were deleted). A record is visible to the uplink only once committed.
* The outbox is append-only. What the broker has acknowledged is kept as a handful of seq
  ranges (`SeqRanges`), not as a flag on every row: marking 500 readings sent changes a few
  bytes, not 500 rows. The ranges also cover deleted seqs, so "unsent" is simply "stored, not in
  the ranges".
* The storage budget (``max_mb``, ``max_age_days``) deletes the oldest sent records first, then
  the oldest unsent readings, never unsent events or receipts; every deletion of unsent records
  is reported by a ``data_dropped`` event naming exactly the count and the seq range.
* A full disk (or any write error) does not stop the service: readings wait in a bounded memory
  buffer, events and receipts are held, and everything is committed when writing works again.

The uplink (gateway/uplink/link.py) reads through an `OutboxReader` in its own thread and calls
`Store.mark_sent` from its PUBACK callback. `cunxiang status` reads the same file read-only
(gateway/status/database.py). The layout and the migrations are in gateway/store/schema.py.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import functools
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from gateway.store import alert_log
from gateway.store import schema as store_schema
from gateway.store.schema import KIND_EVENT, KIND_READING, KIND_RECEIPT

log = logging.getLogger(__name__)

#: Readings kept in memory while the database cannot be written (about 150 bytes each).
MAX_BUFFERED_READINGS = 100_000
#: Events and receipts held in memory while the database cannot be written.
MAX_HELD_RECORDS = 10_000
#: Buffered readings that make the committer thread commit before its interval is up.
EARLY_COMMIT_ROWS = 20_000
#: Buffered readings at which the caller of add_reading commits itself (back-pressure).
INLINE_COMMIT_ROWS = 50_000
#: The budget deletes sent records down to this share of ``max_mb`` (so it seldom runs) and
#: unsent readings down to this one (each run costs a data_dropped event; each is data lost).
SENT_LOW_WATER = 0.9
UNSENT_LOW_WATER = 0.98
#: Acknowledged ranges, status fields and last values are saved at most this often (and on
#: flush/close): losing a few seconds of acknowledgements to a crash only causes duplicates.
STATE_SAVE_S = 5.0
#: ... and as soon as this many newly acknowledged seqs are unsaved, so a crash loop during a
#: drain resends at most about this many records per life (docs/storage-and-sync.md).
ACK_SAVE_RECORDS = 256
#: How often the committer thread applies ``max_age_days``.
AGE_CHECK_S = 3600.0
#: Rows one budget statement handles at most (keeps memory and lock hold times bounded).
BUDGET_CHUNK_ROWS = 100_000
#: Row sizes (bytes on disk) the budget assumes: small to free sent records, large for unsent.
MIN_ROW_BYTES = 20
MAX_ROW_BYTES = 64
#: Unsent readings deleted per budget pass at least, and passes per budget run at most.
UNSENT_STEP_ROWS = 256
BUDGET_PASSES = 64
#: Timestamps before this (2020-01-01) come from a clock that was never set: never "too old".
SANE_EPOCH_MS = 1_577_836_800_000
DAY_MS = 86_400_000
#: Saves a state row in place. INSERT OR REPLACE would delete and re-insert it under a new
#: rowid, rewriting the key's index page too: one more page in the WAL for every save.
SAVE_STATE = (
    "INSERT INTO state VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
#: Alert-log states of a broadcast that has not finished: after a restart it plays again.
UNFINISHED_ALERT_STATES = ("received", "queued", "playing", "interrupted")
#: Event and receipt members that the store writes itself.
RESERVED_MEMBERS = frozenset({"seq", "ts"})

RecordKind = Literal["reading", "event", "receipt"]
T = TypeVar("T")
_KIND_NAMES: dict[int, RecordKind] = {
    KIND_READING: "reading",
    KIND_EVENT: "event",
    KIND_RECEIPT: "receipt",
}


class StoreError(Exception):
    """The database cannot be used (corrupt, foreign, too new, locked or unwritable).

    The message names the file and says what to do; the file itself is never overwritten.
    """


class ReadingLike(Protocol):
    """What the store needs from a reading (drivers.base.Reading fits)."""

    @property
    def sensor(self) -> str: ...
    @property
    def quantity(self) -> str: ...
    @property
    def value(self) -> float | bool: ...
    @property
    def ts(self) -> int: ...
    @property
    def flags(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One stored record as it goes on the wire (docs/protocol.md §4, §5, §7)."""

    seq: int
    kind: RecordKind
    ts: int
    json: str

    def as_dict(self) -> dict[str, object]:
        """The record as a dict (for status output and tests)."""
        value: dict[str, object] = json.loads(self.json)
        return value


@dataclass(frozen=True, slots=True)
class Stored:
    """What became of an event or receipt handed to the store.

    ``seq`` is its sequence number once committed; None while it is held in memory because
    the database cannot be written (disk full) — it is committed, in order, as soon as
    writing works again, and gets its seq then. Never build an identifier from a seq that
    may not exist yet.
    """

    seq: int | None

    @property
    def held(self) -> bool:
        """True while the record waits in memory for the database to be writable again."""
        return self.seq is None


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Readings for one telemetry message: JSON objects in seq order, and the seqs they cover."""

    fragments: list[str]
    runs: list[tuple[int, int]]
    cursor: int
    size: int


def now_ms() -> int:
    """Wall-clock time, integer epoch milliseconds UTC."""
    return time.time_ns() // 1_000_000


def value_json(value: float | bool) -> str:
    """A reading value as JSON text; ValueError for NaN, infinity or a non-number."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if not isinstance(value, int | float):
        raise ValueError(f"a reading value must be a number or a bool, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"a reading value must be finite, not {number}")
    return repr(number)


def json_members(fields: Mapping[str, object]) -> str:
    """The members of a JSON object without its braces (``"a":1,"b":"x"``)."""
    reserved = RESERVED_MEMBERS.intersection(fields)
    if reserved:
        raise ValueError(f"fields {sorted(reserved)} are set by the store")
    try:
        text = json.dumps(dict(fields), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"fields cannot be written as JSON: {exc}") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from untrusted JSON: keep it as an escape
        text = json.dumps(dict(fields), ensure_ascii=True, separators=(",", ":"))
    return text[1:-1]


class SeqRanges:
    """A set of seqs kept as sorted, disjoint, merged inclusive ranges.

    Used for the seqs that need no more sending: acknowledged by the broker, or deleted.
    Acknowledgements arrive nearly in order, so the set is usually one or two ranges.
    """

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._lo: list[int] = []
        self._hi: list[int] = []
        for lo, hi in ranges:
            self.add(lo, hi)

    def add(self, lo: int, hi: int) -> None:
        """Add the seqs lo..hi (inclusive)."""
        if hi < lo:
            return
        if self._hi and self._lo[-1] <= lo <= self._hi[-1] + 1:
            self._hi[-1] = max(self._hi[-1], hi)  # the common case: extend the newest range
            return
        first = bisect.bisect_left(self._hi, lo - 1)
        end = bisect.bisect_right(self._lo, hi + 1)
        if first < end:
            lo = min(lo, self._lo[first])
            hi = max(hi, self._hi[end - 1])
        self._lo[first:end] = [lo]
        self._hi[first:end] = [hi]

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        i = bisect.bisect_right(self._lo, seq) - 1
        return i >= 0 and self._hi[i] >= seq

    def next_missing(self, seq: int) -> int:
        """The smallest seq >= `seq` not in the set."""
        i = bisect.bisect_right(self._lo, seq) - 1
        if i >= 0 and self._hi[i] >= seq:
            return self._hi[i] + 1
        return seq

    def next_present(self, seq: int) -> int | None:
        """The smallest seq >= `seq` in the set, or None."""
        i = bisect.bisect_left(self._hi, seq)
        if i < len(self._lo):
            return max(seq, self._lo[i])
        return None

    def count_upto(self, last: int) -> int:
        """How many seqs in 1..last are in the set."""
        total = 0
        for lo, hi in zip(self._lo, self._hi, strict=True):
            if lo > last:
                break
            total += min(hi, last) - lo + 1
        return total

    def ranges(self) -> list[tuple[int, int]]:
        """The ranges, lowest first."""
        return list(zip(self._lo, self._hi, strict=True))

    def __len__(self) -> int:
        return len(self._lo)


def runs_of(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Ascending seqs as inclusive runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    lo = prev = -2
    for seq in seqs:
        if seq != prev + 1:
            if prev >= 0:
                runs.append((lo, prev))
            lo = seq
        prev = seq
    if prev >= 0:
        runs.append((lo, prev))
    return runs


@dataclass(slots=True)
class _Record:
    """An event or receipt waiting for its transaction."""

    kind: int
    ts: int
    body: str
    fault: tuple[str, str, str] | None = None  # (sensor, "fault"|"ok", reason)
    memory_loss: bool = False  # the data_dropped event for readings a full disk pushed out


@dataclass(frozen=True, slots=True)
class _Channel:
    """How the readings of one (sensor, quantity, flags) render: head before v, tail after."""

    sensor: str
    quantity: str
    flags: str
    head: str
    tail: str


def _channel(sensor: str, quantity: str, flags: str) -> _Channel:
    head = f'"sensor":{json.dumps(sensor)},"q":{json.dumps(quantity)}'
    tail = f',"flags":{flags}' if flags else ""
    return _Channel(sensor, quantity, flags, head, tail)


def _flags_json(flags: tuple[str, ...]) -> str:
    if not flags:
        return ""
    if not all(isinstance(flag, str) and flag for flag in flags):
        raise ValueError(f"flags must be non-empty strings, not {flags!r}")
    return json.dumps(list(flags), separators=(",", ":"))


def _is_disk_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)


class Store:
    """The outbox, the alert log and the status record of one station, in one SQLite file.

    Thread-safe. `add_reading` is cheap and never blocks on disk; `add_event`,
    `add_receipt` and the alert-log methods commit before they return.
    """

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
        self._max_bytes = max_mb * 1024 * 1024
        self._max_age_ms = max_age_days * DAY_MS
        self._interval = commit_interval_s
        self._lock = threading.RLock()  # the writer connection and everything it commits
        self._buf_lock = threading.Lock()  # the reading buffer and the channel table
        self._mem_lock = threading.Lock()  # acknowledged ranges and status fields
        self._read_lock = threading.Lock()  # the connection for queries from the caller's thread
        self._listeners: list[Callable[[], None]] = []
        self._buffer: list[tuple[int, int, str]] = []
        self._new_channels: list[tuple[int, str, str, str]] = []
        self._held: list[_Record] = []
        self._lost_in_memory = 0
        self._committing = 0  # readings taken from the buffer by a commit still under way
        self._unsaved_alerts: dict[str, tuple[str, int, int, str]] = {}
        # Unfinished alert-log states (queued, playing, ...) that ride with the next commit.
        self._alert_states: dict[str, tuple[str, int]] = {}
        self._pending_runs: list[tuple[int, int]] = []
        self._acked_unsaved = 0  # seqs acknowledged since the acknowledged ranges were saved
        self._pending_drops: dict[str, tuple[int, int, int]] = {}
        self._write_error: str | None = None
        self._budget_checked = 0.0
        self._state_saved_at = 0.0
        self._age_checked = -AGE_CHECK_S
        self._budget_warned = False
        self._closed = False
        self._trimmers: list[Callable[[sqlite3.Connection], object]] = []
        self._lockfile = self._take_lock()
        try:
            self._db = self._open()
            self._reader_db = self._connect_reader()
            self._load()
        except BaseException:
            self._release_lock()
            raise
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cunxiang-store", daemon=True)
        self._thread.start()

    # --- opening ----------------------------------------------------------------------------

    def _fail(self, what: str) -> StoreError:
        return StoreError(f"{self.path}: {what}")

    def _take_lock(self) -> int:
        """One service per database: a second `cunxiang run` would fight over the broker session."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._fail(f"cannot create the database folder or lock file: {exc}") from None
        deadline = time.monotonic() + 0.5
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise self._fail(
                        "another cunxiang process is using this database "
                        "(is the service already running?)"
                    ) from None
                time.sleep(0.05)

    def _release_lock(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lockfile)

    def _check_existing(self) -> None:
        """Refuse a file that is not ours before SQLite writes anything to it."""
        if not self.path.exists():
            return
        if not self.path.is_file():
            raise self._fail("exists but is not a regular file")
        try:
            with self.path.open("rb") as file:
                header = file.read(16)
        except OSError as exc:
            raise self._fail(f"cannot be read: {exc}") from None
        if header and header != b"SQLite format 3\x00":
            raise self._fail(
                "is not an SQLite database (a foreign or damaged file); it was left untouched. "
                "Move it away (keep it for inspection) or point storage.path elsewhere"
            )
        if not header:
            return
        try:
            probe = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                if not store_schema.is_blank(probe):
                    store_schema.check_ours(probe)
            finally:
                probe.close()
        except store_schema.SchemaError as exc:
            raise self._fail(f"{exc}; it was left untouched") from None
        except sqlite3.Error as exc:
            raise self._fail(
                f"cannot be read as a database ({exc}); it was left untouched. Move it away "
                "(keep it for inspection) and start again to begin a new one"
            ) from None

    def _open(self) -> sqlite3.Connection:
        self._check_existing()
        try:
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise self._fail(f"cannot open: {exc}") from None
        try:
            db.execute("PRAGMA page_size=1024")
            # A new file only (no effect on an existing one): lets the budget give freed
            # pages back to the file system (gateway/store/alert_log.py).
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise self._fail(f"cannot switch to WAL mode (got {mode})")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA journal_size_limit=4194304")
            store_schema.migrate(db)
        except store_schema.SchemaError as exc:
            db.close()
            raise self._fail(f"{exc}; it was left untouched") from None
        except sqlite3.Error as exc:
            db.close()
            raise self._fail(
                f"cannot be written ({exc}); check the owner and mode of the file and its folder"
            ) from None
        return db

    def _connect_reader(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        # SQLite's default page cache (2 MB). The drain reads each page once, in order, from the
        # OS's cache: 8 MB here added 7.5 MB to the service's peak RSS and nothing to its speed.
        db.execute("PRAGMA cache_size=-2000")
        db.execute("PRAGMA query_only=1")
        return db

    def _load(self) -> None:
        try:
            self._load_state()
        except sqlite3.Error as exc:
            self._db.close()
            raise self._fail(f"is damaged ({exc}); it was left untouched") from None

    def _load_state(self) -> None:
        db = self._db
        state = dict(db.execute("SELECT key, value FROM state").fetchall())
        owner = state.get("station_id")
        if owner is None:
            db.execute(
                "INSERT INTO state VALUES ('station_id', ?), ('created_ts', ?)",
                (self.station_id, str(now_ms())),
            )
        elif owner != self.station_id:
            raise self._fail(
                f"belongs to station {owner!r}, not {self.station_id!r}; records in it would "
                "reach the centre under the wrong id. Move the file away or fix station.id"
            )
        self._done = SeqRanges(tuple(pair) for pair in json.loads(state.get("done", "[]")))
        self._status: dict[str, object] = json.loads(state.get("status", "{}"))
        self._faults: dict[str, dict[str, object]] = json.loads(state.get("faults", "{}"))
        self._channels: dict[int, _Channel] = {}
        self._channel_ids: dict[tuple[str, str, str], int] = {}
        for chan, sensor, quantity, flags in db.execute(
            "SELECT id, sensor, quantity, flags FROM channels"
        ):
            self._channels[chan] = _channel(sensor, quantity, flags)
            self._channel_ids[(sensor, quantity, flags)] = chan
        self._next_channel = max(self._channels, default=0) + 1
        self._intern: dict[tuple[str, str, tuple[str, ...]], int] = {}
        self._last: dict[int, tuple[int, str]] = {}
        for item in json.loads(state.get("last_readings", "[]")):
            key = (item["sensor"], item["q"], item.get("flags", ""))
            if key in self._channel_ids:
                self._last[self._channel_ids[key]] = (int(item["ts"]), str(item["v"]))
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        self._last_seq: int = int(row[0]) if row else 0
        row = db.execute(
            "SELECT seq FROM outbox INDEXED BY outbox_records WHERE kind > 0 "
            "ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        self._last_record_seq: int = int(row[0]) if row else 0
        oldest = db.execute("SELECT min(seq) FROM outbox").fetchone()[0]
        # Seqs below the oldest stored row no longer exist: nothing can send them any more.
        self._done.add(1, (int(oldest) if oldest is not None else self._last_seq + 1) - 1)
        self._mem_version = 1
        self._saved_version = 0
        self._last_version = 0
        self._saved_last_version = 0

    # --- ingest ---------------------------------------------------------------------------------

    def add_reading(
        self,
        sensor: str,
        quantity: str,
        value: float | bool,
        ts: int,
        flags: tuple[str, ...] = (),
    ) -> None:
        """Buffer one reading; it is committed (durable) within ``commit_interval_s``.

        ValueError for a value that is not a finite number or a bool.
        """
        text = value_json(value)
        if not isinstance(ts, int):
            raise ValueError(f"ts must be integer epoch milliseconds, not {ts!r}")
        key = (sensor, quantity, flags)
        with self._buf_lock:
            chan = self._intern.get(key)
            if chan is None:
                chan = self._new_channel(sensor, quantity, flags)
            self._buffer.append((ts, chan, text))
            self._last[chan] = (ts, text)
            self._last_version += 1
            pending = len(self._buffer)
        if pending >= EARLY_COMMIT_ROWS:
            self._relieve(pending)

    def _relieve(self, pending: int) -> None:
        """Keep the buffer bounded when readings come faster than the committer thread commits."""
        if not self._wake.is_set():  # Event.set() takes a lock: a tenth of bulk ingest's CPU
            self._wake.set()
        if pending < INLINE_COMMIT_ROWS:
            return
        if self._write_error is None:
            self._commit(None)  # back-pressure: the producer pays for its own commit
            return
        with self._buf_lock:
            overflow = len(self._buffer) - MAX_BUFFERED_READINGS
            if overflow > 0:
                del self._buffer[:overflow]
                self._lost_in_memory += overflow

    def add(self, reading: ReadingLike) -> None:
        """Buffer a reading object (drivers.base.Reading or anything with the same fields)."""
        self.add_reading(reading.sensor, reading.quantity, reading.value, reading.ts, reading.flags)

    def _new_channel(self, sensor: str, quantity: str, flags: tuple[str, ...]) -> int:
        if (
            not isinstance(sensor, str)
            or not sensor
            or not isinstance(quantity, str)
            or not quantity
        ):
            raise ValueError(
                f"sensor and quantity must be non-empty strings: {sensor!r}, {quantity!r}"
            )
        flags_text = _flags_json(tuple(flags))
        triple = (sensor, quantity, flags_text)
        chan = self._channel_ids.get(triple)
        if chan is None:
            chan = self._next_channel
            self._next_channel += 1
            self._channels[chan] = _channel(sensor, quantity, flags_text)
            self._channel_ids[triple] = chan
            self._new_channels.append((chan, sensor, quantity, flags_text))
        self._intern[(sensor, quantity, tuple(flags))] = chan
        return chan

    def add_event(self, type_: str, fields: Mapping[str, object], ts: int | None = None) -> Stored:
        """Commit one event (docs/protocol.md §5) now: `Stored` with its seq, or held in memory.

        Held means the database cannot be written right now (disk full): the event is kept
        and committed, in order, as soon as writing works again.
        """
        if not isinstance(type_, str) or not type_:
            raise ValueError(f"an event needs a type, not {type_!r}")
        if "type" in fields:
            raise ValueError("the event type goes in type_, not in fields")
        body = json_members({"type": type_, **fields})
        fault = None
        sensor = fields.get("sensor")
        if type_ in ("sensor_fault", "sensor_ok") and isinstance(sensor, str):
            state = "fault" if type_ == "sensor_fault" else "ok"
            fault = (sensor, state, str(fields.get("reason", "")))
        return self._stored(_Record(KIND_EVENT, now_ms() if ts is None else ts, body, fault))

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
        record = self._receipt_record(alert_id, status, fields, ts)
        if defer:
            with self._lock:
                self._held.append(record)
            return Stored(None)
        return self._stored(record)

    @staticmethod
    def _receipt_record(
        alert_id: str, status: str, fields: Mapping[str, object], ts: int | None = None
    ) -> _Record:
        if (
            not isinstance(alert_id, str)
            or not alert_id
            or not isinstance(status, str)
            or not status
        ):
            raise ValueError(f"a receipt needs an alert id and a status: {alert_id!r}, {status!r}")
        if "alert" in fields or "status" in fields:
            raise ValueError("the alert id and status are arguments, not fields")
        body = json_members({"alert": alert_id, "status": status, **fields})
        return _Record(KIND_RECEIPT, now_ms() if ts is None else ts, body)

    def _stored(self, record: _Record) -> Stored:
        seq = self._commit(record)
        return Stored(seq if seq > 0 else None)

    def flush(self) -> None:
        """Commit buffered readings and pending state now (also done by `close`)."""
        self._commit(None, force_state=True)

    # --- commit -------------------------------------------------------------------------------

    def _commit(self, record: _Record | None, force_state: bool = False) -> int:
        """Commit buffered readings, held records, `record` and changed state in one transaction."""
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.path}: the store is closed")
            with self._buf_lock:
                rows, self._buffer = self._buffer, []
                channels, self._new_channels = self._new_channels, []
                self._committing = len(rows)
            records = list(self._held)
            if self._lost_in_memory:
                records.append(self._memory_loss_record())
            if record is not None:
                records.append(record)
            state_rows, versions = self._dirty_state(force=force_state)
            alerts = dict(self._unsaved_alerts)
            alert_states = dict(self._alert_states)
            if not (rows or channels or records or state_rows or alerts or alert_states):
                self._committing = 0
                return 0
            try:
                seq = self._write(rows, channels, records, state_rows, alerts, alert_states)
            except sqlite3.Error as exc:
                self._write_failed(exc, rows, channels, records)
                return 0
            except Exception:
                # A record that cannot be written (a bug, or input no one foresaw) must not take
                # the readings that share its transaction down with it: they wait for the next.
                with self._buf_lock:
                    self._buffer[:0] = rows
                    self._new_channels[:0] = channels
                raise
            finally:
                self._committing = 0
            self._written(versions, records, alerts)
            for key, value in alert_states.items():
                if self._alert_states.get(key) == value:
                    del self._alert_states[key]
        if rows or records:
            self._notify()
        return seq

    def _write(
        self,
        rows: list[tuple[int, int, str]],
        channels: list[tuple[int, str, str, str]],
        records: list[_Record],
        state_rows: list[tuple[str, str]],
        alerts: dict[str, tuple[str, int, int, str]],
        alert_states: Mapping[str, tuple[str, int]] | None = None,
    ) -> int:
        db = self._db
        seq = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            if channels:
                db.executemany("INSERT INTO channels VALUES (?, ?, ?, ?)", channels)
            if rows:
                db.executemany("INSERT INTO outbox (kind, ts, chan, v) VALUES (0, ?, ?, ?)", rows)
            for rec in records:
                cursor = db.execute(
                    "INSERT INTO outbox (kind, ts, body) VALUES (?, ?, ?)",
                    (rec.kind, rec.ts, rec.body),
                )
                seq = int(cursor.lastrowid or 0)
                if rec.fault is not None:
                    state_rows = self._with_fault(rec, seq, state_rows)
            if state_rows:
                db.executemany(SAVE_STATE, state_rows)
            if alerts:
                db.executemany(
                    "INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?)",
                    [(key, *row) for key, row in alerts.items()],
                )
            if alert_states:
                db.executemany(
                    "UPDATE alerts SET state = ?, updated_ts = ? WHERE id = ?",
                    [(state, ts, key) for key, (state, ts) in alert_states.items()],
                )
            last = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self._last_seq = int(last[0]) if last else 0
        if records:
            self._last_record_seq = seq
        return seq

    def _with_fault(
        self, rec: _Record, seq: int, state_rows: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Keep the latest sensor_fault / sensor_ok per sensor for `cunxiang status`."""
        assert rec.fault is not None
        sensor, state, reason = rec.fault
        entry: dict[str, object] = {"state": state, "ts": rec.ts, "seq": seq}
        if reason:
            entry["reason"] = reason
        self._faults[sensor] = entry
        faults = json.dumps(self._faults, ensure_ascii=False, separators=(",", ":"))
        return [row for row in state_rows if row[0] != "faults"] + [("faults", faults)]

    def _written(
        self,
        versions: tuple[int, int],
        records: list[_Record],
        alerts: dict[str, tuple[str, int, int, str]],
    ) -> None:
        if versions != (self._saved_version, self._saved_last_version):
            self._state_saved_at = time.monotonic()
        self._saved_version, self._saved_last_version = versions
        self._held = []
        if any(rec.memory_loss for rec in records):
            self._lost_in_memory = 0
        for key, row in alerts.items():
            if self._unsaved_alerts.get(key) == row:
                del self._unsaved_alerts[key]
        if self._write_error is not None:
            log.warning(
                "%s: writing works again; the records kept in memory are committed", self.path
            )
            self._write_error = None

    def _memory_loss_record(self) -> _Record:
        """A data_dropped event for readings that a full disk forced out of the memory buffer.

        They never had a seq, so from_seq and to_seq are null; count says how many.
        """
        fields: dict[str, object] = {
            "count": self._lost_in_memory,
            "from_seq": None,
            "to_seq": None,
            "reason": "disk_full",
        }
        body = json_members({"type": "data_dropped", **fields})
        return _Record(KIND_EVENT, now_ms(), body, memory_loss=True)

    def _write_failed(
        self,
        exc: sqlite3.Error,
        rows: list[tuple[int, int, str]],
        channels: list[tuple[int, str, str, str]],
        records: list[_Record],
    ) -> None:
        """Keep everything in memory (bounded) and say so once per episode."""
        with self._buf_lock:
            self._buffer[:0] = rows
            self._new_channels[:0] = channels
            overflow = len(self._buffer) - MAX_BUFFERED_READINGS
            if overflow > 0:
                del self._buffer[:overflow]
                self._lost_in_memory += overflow
        held = [rec for rec in records if not rec.memory_loss]
        if len(held) > MAX_HELD_RECORDS:
            log.error(
                "%s: %d events/receipts lost: the disk stays full",
                self.path,
                len(held) - MAX_HELD_RECORDS,
            )
            held = held[-MAX_HELD_RECORDS:]
        self._held = held
        full = _is_disk_full(exc)
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
            self._free_sent_space()

    @property
    def write_error(self) -> str | None:
        """Why the last write failed (e.g. "disk full"), or None when writing works."""
        return self._write_error

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("store listener failed")

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (from the committing thread) after each commit of new records."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling `listener`."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    # --- state rows -----------------------------------------------------------------------------

    def _dirty_state(
        self, extra_runs: Iterable[tuple[int, int]] = (), force: bool = False
    ) -> tuple[list[tuple[str, str]], tuple[int, int]]:
        """State rows that changed since they were last saved, and the versions they capture.

        Unless forced they are saved at most every STATE_SAVE_S: a lost acknowledgement only
        means a record is sent twice, and flash wears with every page written.
        """
        rows: list[tuple[str, str]] = []
        if (
            not force
            and time.monotonic() - self._state_saved_at < STATE_SAVE_S
            and self._acked_unsaved < ACK_SAVE_RECORDS
        ):
            return rows, (self._saved_version, self._saved_last_version)
        with self._mem_lock:
            self._acked_unsaved = 0
            version = self._mem_version
            if force or version != self._saved_version:
                done = self._done
                if extra_runs:
                    done = SeqRanges(done.ranges())
                    for lo, hi in extra_runs:
                        done.add(lo, hi)
                rows.append(("done", json.dumps(done.ranges(), separators=(",", ":"))))
                status = json.dumps(self._status, ensure_ascii=False, separators=(",", ":"))
                rows.append(("status", status))
        with self._buf_lock:
            last_version = self._last_version
            if last_version != self._saved_last_version:
                rows.append(("last_readings", self._last_readings_json()))
        return rows, (version, last_version)

    def _last_readings_json(self) -> str:
        latest: dict[tuple[str, str], tuple[int, str, _Channel]] = {}
        for chan, (ts, text) in self._last.items():
            channel = self._channels[chan]
            key = (channel.sensor, channel.quantity)
            if key not in latest or latest[key][0] <= ts:
                latest[key] = (ts, text, channel)
        items = []
        for (_sensor, _quantity), (ts, text, channel) in sorted(latest.items()):
            flags = f',"flags":{json.dumps(channel.flags)}' if channel.flags else ""
            items.append(f'{{{channel.head},"v":{text},"ts":{ts}{flags}}}')
        return "[" + ",".join(items) + "]"

    def mark_sent(self, runs: Iterable[tuple[int, int]]) -> None:
        """The broker acknowledged these seqs (PUBACK): they need no more sending."""
        with self._mem_lock:
            for lo, hi in runs:
                self._done.add(lo, hi)
                self._acked_unsaved += hi - lo + 1
            self._mem_version += 1
            due = self._acked_unsaved >= ACK_SAVE_RECORDS
        if due and not self._wake.is_set():
            self._wake.set()  # the committer saves them now, not at the end of STATE_SAVE_S

    def set_status(self, **fields: object) -> None:
        """Record status fields for `cunxiang status` (persisted with the next commit)."""
        with self._mem_lock:
            self._status.update(fields)
            self._mem_version += 1

    def status(self) -> dict[str, object]:
        """The status fields recorded so far."""
        with self._mem_lock:
            return dict(self._status)

    def state_value(self, key: str) -> str | None:
        """One row of the `state` table (e.g. the time floor), or None."""
        with self._read_lock:
            row = self._reader_db.execute(
                "SELECT value FROM state WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else str(row[0])

    def save_state_value(self, key: str, value: str) -> None:
        """Write one row of the `state` table; committed before it returns."""
        with self._lock:
            self._db.execute(SAVE_STATE, (key, value))

    # --- what is unsent -------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The highest committed seq (0 for an empty store)."""
        return self._last_seq

    @property
    def last_record_seq(self) -> int:
        """The highest committed seq of an event or receipt."""
        return self._last_record_seq

    def is_sent(self, seq: int) -> bool:
        """True if `seq` needs no more sending (acknowledged or deleted)."""
        with self._mem_lock:
            return seq in self._done

    def unsent_span(self, after: int) -> tuple[int, int] | None:
        """The first run of seqs > `after` that still needs sending, or None."""
        last = self._last_seq
        with self._mem_lock:
            start = self._done.next_missing(after + 1)
            if start > last:
                return None
            present = self._done.next_present(start)
        end = last if present is None else min(last, present - 1)
        return start, end

    def backlog(self) -> tuple[int, int | None]:
        """Records not yet acknowledged by the broker (buffered ones too), and the oldest ts.

        Never below the truth: the buffered count is read before ``last_seq``, so readings a
        commit moves from the buffer to the table meanwhile are counted twice, never not at
        all (``_commit`` raises ``last_seq`` before it clears ``_committing``).
        """
        with self._buf_lock:
            buffered = len(self._buffer) + len(self._held) + self._committing
            oldest = min((ts for ts, _, _ in self._buffer[:1]), default=None)
        last = self._last_seq
        with self._mem_lock:
            count = last - self._done.count_upto(last)
            first = self._done.next_missing(1)
        oldest_stored = None
        if count > 0:
            with self._read_lock:
                row = self._reader_db.execute(
                    "SELECT ts FROM outbox WHERE seq >= ? ORDER BY seq LIMIT 1", (first,)
                ).fetchone()
            oldest_stored = int(row[0]) if row else None
        known = [ts for ts in (oldest, oldest_stored) if ts is not None]
        return max(0, count) + buffered, (min(known) if known else None)

    def stored_range(self, from_seq: int, to_seq: int) -> tuple[int, int] | None:
        """The first and last seq still stored within from_seq..to_seq, or None."""
        with self._read_lock:
            row = self._reader_db.execute(
                "SELECT min(seq), max(seq) FROM outbox WHERE seq BETWEEN ? AND ?",
                (from_seq, to_seq),
            ).fetchone()
        return None if row[0] is None else (int(row[0]), int(row[1]))

    def records(self, from_seq: int, to_seq: int, limit: int | None = None) -> list[OutboxRecord]:
        """Records still stored with from_seq <= seq <= to_seq, sent or not, in seq order."""
        with self._read_lock:
            return _render_records(
                self._reader_db, self._channel_lookup, from_seq, to_seq, limit or -1
            )

    def _channel_lookup(self, chan: int) -> _Channel:
        with self._buf_lock:
            return self._channels[chan]

    def reader(self) -> OutboxReader:
        """A reader with its own connection, for the uplink's thread."""
        return OutboxReader(self)

    # --- alert log ------------------------------------------------------------------------------

    def remember_alert(
        self,
        alert_id: str,
        record: Mapping[str, object],
        received: Mapping[str, object] | None = None,
        receipt_id: str | None = None,
    ) -> bool:
        """Log an accepted alert; False if this id was seen before (also before a restart).

        Committed before it returns. If the disk is full the alert is kept in memory (and still
        de-duplicated) until it can be written. With `received`, the alert's ``received``
        receipt (docs/protocol.md §7, these fields, naming `receipt_id` or else `alert_id`) is
        committed in the same transaction: one fsync on the way to the first sound instead of
        two (docs/performance.md).
        """
        now = now_ms()
        row = ("received", now, now, json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        with self._lock:
            if alert_id in self._unsaved_alerts:
                return False
            if received is not None:
                receipt = self._receipt_record(receipt_id or alert_id, "received", received)
                return self._remember_with_receipt(alert_id, row, receipt)
            try:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?)", (alert_id, *row)
                )
            except sqlite3.Error as exc:
                return self._remember_unsaved(alert_id, row, exc)
            return cursor.rowcount == 1

    def _remember_with_receipt(
        self, alert_id: str, row: tuple[str, int, int, str], receipt: _Record
    ) -> bool:
        try:
            known = self._db.execute("SELECT 1 FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        except sqlite3.Error as exc:
            if not self._remember_unsaved(alert_id, row, exc):
                return False
            self._commit(receipt)
            return True
        if known:
            return False
        # Written by _commit's transaction (alerts not yet saved go in every commit); if the
        # disk is full it stays in memory, de-duplicated, like the receipt.
        self._unsaved_alerts[alert_id] = row
        self._commit(receipt)
        return True

    def _remember_unsaved(
        self, alert_id: str, row: tuple[str, int, int, str], exc: sqlite3.Error
    ) -> bool:
        known = self._db.execute("SELECT 1 FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if known:
            return False
        log.error("%s: cannot log alert %r (%s); keeping it in memory", self.path, alert_id, exc)
        self._unsaved_alerts[alert_id] = row
        return True

    def set_alert_state(self, alert_id: str, state: str) -> None:
        """Record where an alert's broadcast is (queued, playing, played, …).

        A finished state (played, failed, cancelled, ...) is committed now. An unfinished one
        (`UNFINISHED_ALERT_STATES`) rides with the next commit — the receipt that goes with it,
        or the committer's within ``commit_interval_s``: a restart resumes every unfinished
        alert alike, so a crash before that commit loses nothing, and the way to the first
        sound saves an fsync per step (docs/performance.md).
        """
        now = now_ms()
        with self._lock:
            unsaved = self._unsaved_alerts.get(alert_id)
            if unsaved is not None:
                record = unsaved[3]
                if state in alert_log.FINAL_STATES:
                    record = json.dumps(
                        alert_log.compact_record(json.loads(record)),
                        ensure_ascii=False,
                        separators=(",", ":"),
                    )
                self._unsaved_alerts[alert_id] = (state, unsaved[1], now, record)
                return
            if state in UNFINISHED_ALERT_STATES:
                self._alert_states[alert_id] = (state, now)
                return
            self._alert_states.pop(alert_id, None)
            try:
                # A finished alert keeps a compact record, in the same (one fsync) commit.
                final = state in alert_log.FINAL_STATES
                compact = alert_log.compacted(self._db, alert_id) if final else None
                if compact is None:
                    cursor = self._db.execute(
                        "UPDATE alerts SET state = ?, updated_ts = ? WHERE id = ?",
                        (state, now, alert_id),
                    )
                else:
                    cursor = self._db.execute(
                        "UPDATE alerts SET state = ?, updated_ts = ?, record = ? WHERE id = ?",
                        (state, now, compact, alert_id),
                    )
            except sqlite3.Error as exc:
                log.error("%s: cannot update alert %r: %s", self.path, alert_id, exc)
                return
        if cursor.rowcount == 0:
            log.warning("set_alert_state: no alert %r in the log", alert_id)

    def unfinished_alerts(self) -> list[dict[str, Any]]:
        """Accepted alerts whose broadcast has not finished (received, queued, playing or
        interrupted), oldest first.

        Each item is the record given to `remember_alert` plus ``id``, ``state``,
        ``received_ts`` and ``updated_ts``.
        """
        marks = ",".join("?" * len(UNFINISHED_ALERT_STATES))
        items = self._alerts(
            f"SELECT * FROM alerts WHERE state IN ({marks}) ORDER BY received_ts, rowid",
            list(UNFINISHED_ALERT_STATES),
        )
        items += [i for i in self._unsaved_items() if i["state"] in UNFINISHED_ALERT_STATES]
        return items

    def alert_record(self, alert_id: str) -> dict[str, Any] | None:
        """One alert of the log (as in `unfinished_alerts`), or None if the id was never seen."""
        for item in self._unsaved_items():
            if item["id"] == alert_id:
                return item
        found = self._alerts("SELECT * FROM alerts WHERE id = ?", [alert_id])
        return found[0] if found else None

    def recent_alerts(self, n: int) -> list[dict[str, Any]]:
        """The `n` most recently received alerts, newest first (items as `unfinished_alerts`)."""
        items = self._unsaved_items()[::-1]
        items += self._alerts(
            "SELECT * FROM alerts ORDER BY received_ts DESC, rowid DESC LIMIT ?", [n]
        )
        return items[:n]

    def recent_receipts(self, n: int) -> list[dict[str, Any]]:
        """The `n` newest committed receipts (docs/protocol.md §7, with seq and ts), newest first."""
        with self._read_lock:
            return recent_receipts(self._reader_db, n)

    def faults(self) -> dict[str, dict[str, object]]:
        """The latest sensor_fault / sensor_ok per sensor: state, ts, seq and reason."""
        # No lock: the writer holds it through fsync. Entries are replaced, never changed, and
        # copying a dict is atomic in CPython, so this copy is consistent.
        return {sensor: dict(entry) for sensor, entry in dict(self._faults).items()}

    def _unsaved_items(self) -> list[dict[str, Any]]:
        # No lock (the writer holds it through fsync): copying a dict is atomic in CPython.
        unsaved = dict(self._unsaved_alerts)
        return [alert_item((key, *row)) for key, row in unsaved.items()]

    def _alerts(self, sql: str, params: list[object]) -> list[dict[str, Any]]:
        with self._read_lock:
            rows = self._reader_db.execute(sql, params).fetchall()
        items = [alert_item(row) for row in rows]
        pending = self._alert_states.copy()  # atomic; the writer's lock may be held for an fsync
        for item in items:
            if item["id"] in pending:  # a state that rides with the next commit
                item["state"], item["updated_ts"] = pending[item["id"]]
        return items

    # --- programme schedules (docs/protocol.md §10) ---------------------------------------------

    def save_programme(self, key: str, schedule_id: str, version: int, payload: str) -> None:
        """Keep a schedule's newest version (withdrawn ones too); committed before it returns."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO programmes VALUES (?, ?, ?, ?, ?)",
                (key, schedule_id, version, now_ms(), payload),
            )

    def programmes(self) -> list[tuple[str, str, int, str]]:
        """Every kept schedule as (key, id, version, payload), oldest first."""
        with self._read_lock:
            rows = self._reader_db.execute(
                "SELECT key, id, version, payload FROM programmes ORDER BY received_ts, rowid"
            ).fetchall()
        return [(str(k), str(i), int(v), str(p)) for k, i, v, p in rows]

    # --- storage budget -------------------------------------------------------------------------

    def enforce_budget(self) -> None:
        """Apply ``max_age_days`` and ``max_mb`` now.

        The committer thread applies ``max_mb`` every second and ``max_age_days`` every hour
        (time moves slowly against a 30-day limit, and every run that deletes unsent readings
        adds a ``data_dropped`` event).
        """
        with self._lock:
            if self._closed:
                return
            try:
                self._expire_old()
                self._fit_size()
            except sqlite3.Error as exc:
                log.error("%s: the storage budget could not run: %s", self.path, exc)

    def _budget_tick(self) -> None:
        now = time.monotonic()
        if now - self._budget_checked < 1.0:
            return
        self._budget_checked = now
        with self._lock:
            if self._closed:
                return
            try:
                if now - self._age_checked >= AGE_CHECK_S:
                    self._age_checked = now
                    self._expire_old()
                    self._transaction(self._trim_alert_log)
                self._fit_size()
            except sqlite3.Error as exc:
                log.error("%s: the storage budget could not run: %s", self.path, exc)

    def used_bytes(self) -> int:
        """Bytes of the database file in use (free pages and the WAL not counted)."""
        with self._lock:
            return self._used_bytes()

    def _used_bytes(self) -> int:
        """Bytes in use, as this connection sees them (also inside a transaction)."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _oldest_stored(self) -> int | None:
        row = self._db.execute("SELECT min(seq) FROM outbox").fetchone()
        return None if row[0] is None else int(row[0])

    def _expire_old(self) -> None:
        """Delete records older than ``max_age_days``: sent ones, and unsent readings."""
        now = now_ms()
        if now < SANE_EPOCH_MS:
            return  # the clock was never set: nothing can be judged old
        oldest = self._oldest_stored()
        if oldest is None:
            return
        row = self._db.execute(
            "SELECT seq FROM outbox WHERE seq >= ? AND ts >= ? ORDER BY seq LIMIT 1",
            (oldest, now - self._max_age_ms),
        ).fetchone()
        upto = (int(row[0]) - 1) if row else self._last_seq
        if upto < oldest:
            return
        # Readings stamped by an unset clock carry no trustworthy age (a Pi without a clock
        # battery boots in 1970): only the size budget may delete them while unsent.
        extra = f" AND ts >= {SANE_EPOCH_MS}"
        with self._buf_lock:
            unsynced = [c for c, ch in self._channels.items() if "clock_unsynced" in ch.flags]
        if unsynced:
            extra += f" AND chan NOT IN ({','.join(str(c) for c in unsynced)})"

        def work() -> int:
            sent = self._delete_sent(None, upto)
            return sent + self._drop_unsent(None, upto, "max_age_days", extra)

        self._transaction(work)

    def _fit_size(self) -> None:
        """Delete down to ``max_mb``: sent records (generously), then unsent readings (sparingly).

        SQLite cannot count rows cheaply, so the rows to delete are estimated from the bytes to
        free: generously for sent records (assuming small rows: they are at the centre already),
        sparingly for unsent readings (assuming large rows, measuring again after each step,
        all in one transaction that reports them in one ``data_dropped`` event).
        """
        for _ in range(BUDGET_PASSES):
            used = self._used_bytes()
            if used <= self._max_bytes:
                self._budget_warned = False
                alert_log.give_back_free_pages(self._db)
                return
            if self._transaction(self._trim_alert_log):
                continue
            excess = used - int(self._max_bytes * SENT_LOW_WATER)
            sent = functools.partial(self._delete_sent, excess // MIN_ROW_BYTES + 1, self._last_seq)
            if self._transaction(sent):
                continue
            target = int(self._max_bytes * UNSENT_LOW_WATER)
            if not self._transaction(functools.partial(self._drop_to_fit, target)):
                if not self._budget_warned:
                    log.error(
                        "%s: over storage.max_mb (%d bytes used) but only unsent events and "
                        "receipts are left, and those are never deleted",
                        self.path,
                        used,
                    )
                    self._budget_warned = True
                return

    def _trim_alert_log(self) -> int:
        """Inside a transaction: compact finished alerts, then the registered trims (ancient
        alert-log entries, old answers: gateway/store/alert_log.py, gateway/downlink/answered.py).

        Returns 0 (nothing for the seq ranges to record): only alert-log rows change.
        """
        before = self._used_bytes()
        alert_log.compact_finished(self._db)
        for trim in self._trimmers:
            trim(self._db)
        return int(self._used_bytes() < before)

    def add_trimmer(self, trim: Callable[[sqlite3.Connection], object]) -> None:
        """Call `trim(db)` inside the budget's transaction when the file is over ``max_mb``
        (and hourly), for a module that keeps a table of its own (gateway/downlink/answered.py)."""
        self._trimmers.append(trim)

    def run_write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the writer connection under the store's lock; sqlite3.Error passes on.

        For the modules that keep a table of their own in this file (gateway/downlink/answered.py,
        gateway/store/alert_log.py). Statements commit one by one unless `work` opens a transaction.
        """
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.path}: the store is closed")
            return work(self._db)

    def _drop_to_fit(self, target: int) -> int:
        """Inside a transaction: drop the oldest unsent readings in steps until `target` holds."""
        dropped = 0
        for _ in range(BUDGET_PASSES):
            used = self._used_bytes()
            if used <= target:
                break
            step = max(UNSENT_STEP_ROWS, (used - target) // MAX_ROW_BYTES + 1)
            count = self._drop_unsent(step, self._last_seq, "max_mb", "")
            if not count:
                break
            dropped += count
        return dropped

    def _transaction(self, work: Callable[[], int]) -> int:
        """Run deletions in one transaction that also saves the seq ranges and reports drops.

        Ranges of dropped readings reach the in-memory set only after COMMIT: if the transaction
        fails, those readings are still stored and must still be sent.
        """
        db = self._db
        self._pending_runs = []
        self._pending_drops = {}
        drop_seqs: list[int] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            deleted = work()
            for reason, (count, first, last) in self._pending_drops.items():
                drop_seqs.append(self._report_drop(count, first, last, reason))
            if deleted:
                state_rows, versions = self._dirty_state(self._pending_runs, force=True)
                db.executemany(SAVE_STATE, state_rows)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self._pending_runs, self._pending_drops = [], {}
            raise
        if deleted:
            with self._mem_lock:
                for lo, hi in self._pending_runs:
                    self._done.add(lo, hi)
            self._saved_version, self._saved_last_version = versions
        if drop_seqs:
            self._last_seq = max(self._last_seq, *drop_seqs)
            self._last_record_seq = max(self._last_record_seq, *drop_seqs)
            self._notify()
        self._pending_runs, self._pending_drops = [], {}
        return deleted

    def _delete_sent(self, want: int | None, upto: int) -> int:
        """Delete up to `want` (None: all) acknowledged records with seq <= upto, oldest first."""
        oldest = self._oldest_stored()
        if oldest is None:
            return 0
        with self._mem_lock:
            ranges = self._done.ranges()
        deleted = 0
        for lo, hi in ranges:
            if hi < oldest:
                continue
            if lo > upto or (want is not None and deleted >= want):
                break
            start, end = max(lo, oldest), min(hi, upto)
            while start <= end and (want is None or deleted < want):
                row = self._db.execute(
                    "SELECT seq FROM outbox WHERE seq >= ? ORDER BY seq LIMIT 1", (start,)
                ).fetchone()
                if row is None or row[0] > end:
                    break
                start = int(row[0])
                stop = min(end, start + BUDGET_CHUNK_ROWS - 1)
                if want is not None:
                    stop = min(stop, start + (want - deleted) - 1)
                cursor = self._db.execute(
                    "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (start, stop)
                )
                deleted += cursor.rowcount
                start = stop + 1
        return deleted

    def _drop_unsent(self, want: int | None, upto: int, reason: str, extra: str) -> int:
        """Delete up to `want` (None: all) unsent readings with seq <= upto, oldest first.

        Only inside `_transaction`, which reports what this deleted in one ``data_dropped``
        event per reason: the exact count, and the first and last seq deleted. Events and
        receipts are never deleted here.
        """
        dropped = 0
        after = 0
        while want is None or dropped < want:
            span = self.unsent_span(after)
            if span is None or span[0] > upto:
                break
            first, end = span[0], min(span[1], upto)
            limit = BUDGET_CHUNK_ROWS if want is None else min(BUDGET_CHUNK_ROWS, want - dropped)
            seqs = [
                int(row[0])
                for row in self._db.execute(
                    f"SELECT seq FROM outbox WHERE seq BETWEEN ? AND ? AND kind = 0{extra} "
                    "ORDER BY seq LIMIT ?",
                    (first, end, limit),
                )
            ]
            if seqs:
                self._db.execute(
                    f"DELETE FROM outbox WHERE seq BETWEEN ? AND ? AND kind = 0{extra}",
                    (seqs[0], seqs[-1]),
                )
                self._pending_runs.extend(runs_of(seqs))
                count, low, high = self._pending_drops.get(reason, (0, seqs[0], seqs[-1]))
                self._pending_drops[reason] = (
                    count + len(seqs),
                    min(low, seqs[0]),
                    max(high, seqs[-1]),
                )
                dropped += len(seqs)
            after = seqs[-1] if len(seqs) == limit else end
        return dropped

    def _report_drop(self, count: int, first: int, last: int, reason: str) -> int:
        """Add the data_dropped event (in the current transaction); its seq."""
        fields: dict[str, object] = {
            "count": count,
            "from_seq": first,
            "to_seq": last,
            "reason": reason,
        }
        body = json_members({"type": "data_dropped", **fields})
        cursor = self._db.execute(
            "INSERT INTO outbox (kind, ts, body) VALUES (?, ?, ?)", (KIND_EVENT, now_ms(), body)
        )
        log.warning(
            "%s: storage budget (%s) deleted %d unsent readings between seq %d and %d",
            self.path,
            reason,
            count,
            first,
            last,
        )
        return int(cursor.lastrowid or 0)

    def _free_sent_space(self) -> None:
        """On a full disk, make room inside the file by deleting the oldest sent records."""
        try:
            oldest = self._oldest_stored() or self._last_seq
            rows = max(1000, (self._last_seq - oldest) // 10)
            freed = self._transaction(functools.partial(self._delete_sent, rows, self._last_seq))
        except sqlite3.Error as exc:
            log.debug("freeing space failed: %s", exc)
            return
        if freed:
            log.warning("%s: disk full; deleted %d sent records to make room", self.path, freed)

    # --- background committer and shutdown ------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self._commit(None)
                self._budget_tick()
            except StoreError:
                break
            except Exception:
                log.exception("%s: the committer thread hit an error; it keeps running", self.path)

    def close(self) -> None:
        """Commit what is buffered, stop the committer thread and close the file."""
        if self._closed:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=10)
        with self._lock:
            try:
                self._commit(None, force_state=True)
            finally:
                self._closed = True
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                with self._read_lock:
                    self._reader_db.close()
                self._db.close()
                self._release_lock()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def alert_item(row: tuple[object, ...]) -> dict[str, Any]:
    """One row of the alerts table: the stored record plus id, state and the two timestamps."""
    alert_id, state, received_ts, updated_ts, record = row
    item: dict[str, Any] = json.loads(str(record))
    item.update(id=alert_id, state=state, received_ts=received_ts, updated_ts=updated_ts)
    return item


def recent_receipts(db: sqlite3.Connection, n: int) -> list[dict[str, Any]]:
    """The `n` newest receipts in the database behind `db`, newest first."""
    rows = db.execute(
        "SELECT seq, ts, body FROM outbox INDEXED BY outbox_records "
        "WHERE kind > 0 AND kind = ? ORDER BY seq DESC LIMIT ?",
        (KIND_RECEIPT, n),
    ).fetchall()
    return [json.loads(f'{{"seq":{seq},"ts":{ts},{body}}}') for seq, ts, body in rows]


def _render_records(
    db: sqlite3.Connection,
    channel: Callable[[int], _Channel],
    from_seq: int,
    to_seq: int,
    limit: int,
) -> list[OutboxRecord]:
    out = []
    for seq, kind, ts, chan, v, body in db.execute(
        "SELECT seq, kind, ts, chan, v, body FROM outbox WHERE seq BETWEEN ? AND ? "
        "ORDER BY seq LIMIT ?",
        (from_seq, to_seq, limit),
    ):
        if kind == KIND_READING:
            ch = channel(chan)
            text = f'{{"seq":{seq},"ts":{ts},{ch.head},"v":{v}{ch.tail}}}'
        else:
            text = f'{{"seq":{seq},"ts":{ts},{body}}}'
        out.append(OutboxRecord(seq, _KIND_NAMES.get(kind, "event"), ts, text))
    return out


class OutboxReader:
    """Reads unsent records for the uplink, in its own thread, through its own connection.

    WAL readers never block the writer, and each query sees only committed records, so nothing
    can be published before it is durable.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store._connect_reader()
        self._heads: dict[int, tuple[str, str]] = {}

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def _head(self, chan: int) -> tuple[str, str]:
        head = self._heads.get(chan)
        if head is None:
            channel = self._store._channel_lookup(chan)
            head = self._heads[chan] = (channel.head, channel.tail)
        return head

    def unsent_records(self, after: int, limit: int) -> tuple[list[OutboxRecord], int]:
        """Unsent events and receipts with seq > after (at most `limit`), and the last seq looked at."""
        rows = self._db.execute(
            "SELECT seq, kind, ts, body FROM outbox INDEXED BY outbox_records "
            "WHERE kind > 0 AND seq > ? ORDER BY seq LIMIT ?",
            (after, limit * 4),
        ).fetchall()
        out: list[OutboxRecord] = []
        last = after
        for seq, kind, ts, body in rows:
            if len(out) >= limit:
                break
            last = seq
            if not self._store.is_sent(seq):
                out.append(
                    OutboxRecord(seq, _KIND_NAMES[kind], ts, f'{{"seq":{seq},"ts":{ts},{body}}}')
                )
        return out, last

    def unsent_readings(self, after: int, limit: int, max_bytes: int) -> ReadingBatch | None:
        """The next unsent readings after seq `after`: at most `limit` of them, `max_bytes` of JSON."""
        while True:
            span = self._store.unsent_span(after)
            if span is None:
                return None
            start, end = span
            rows = self._db.execute(
                "SELECT seq, ts, chan, v FROM outbox WHERE seq BETWEEN ? AND ? AND kind = 0 "
                "ORDER BY seq LIMIT ?",
                (start, end, limit),
            ).fetchall()
            if rows:
                return self._batch(rows, end, limit, max_bytes)
            after = end

    def _batch(
        self, rows: list[tuple[int, int, int, str]], end: int, limit: int, max_bytes: int
    ) -> ReadingBatch:
        heads = self._heads
        fragments: list[str] = []
        runs: list[tuple[int, int]] = []
        size = 0
        lo = prev = -2
        for seq, ts, chan, v in rows:
            head = heads.get(chan) or self._head(chan)
            text = f'{{"seq":{seq},"ts":{ts},{head[0]},"v":{v}{head[1]}}}'
            size += len(text) + 1
            if size > max_bytes and fragments:
                size -= len(text) + 1
                break
            fragments.append(text)
            if seq != prev + 1:
                if prev >= 0:
                    runs.append((lo, prev))
                lo = seq
            prev = seq
        runs.append((lo, prev))
        complete = len(fragments) == len(rows) and len(rows) < limit
        return ReadingBatch(fragments, runs, end if complete else prev, size)

    def records(self, from_seq: int, to_seq: int, limit: int) -> list[OutboxRecord]:
        """Stored records in the range, sent or not (for a resend)."""
        return _render_records(self._db, self._store._channel_lookup, from_seq, to_seq, limit)
