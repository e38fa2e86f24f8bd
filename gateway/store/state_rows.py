"""The small rows of table ``state`` that the store keeps in memory, and when it saves them.

Why this module exists: the acknowledged ranges (``done``), the status fields the service and
the uplink record (``status``), the last value per sensor (``last_readings``) and the latest
fault per sensor (``faults``) change with nearly every acknowledgement or reading. Writing
them each time would wear the flash, so they ride with the store's commits: at most every
`STATE_SAVE_S`, and as soon as `ACK_SAVE_RECORDS` acknowledgements are unsaved (a crash then
only makes the uplink send a few records twice: docs/storage-and-sync.md). ``cunxiang status``
reads the same rows when the service is not running (gateway/status/database.py) through the
functions at the end of this module, as the store does when it opens.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from gateway.store.records import Channel
from gateway.store.seq_ranges import SeqRanges

#: Acknowledged ranges, status fields and last values are saved at most this often (and on
#: flush/close): losing a few seconds of acknowledgements to a crash only causes duplicates.
STATE_SAVE_S = 5.0
#: ... and as soon as this many newly acknowledged seqs are unsaved, so a crash loop during a
#: drain resends at most about this many records per life (docs/storage-and-sync.md).
ACK_SAVE_RECORDS = 256
#: Saves a state row in place. INSERT OR REPLACE would delete and re-insert it under a new
#: rowid, rewriting the key's index page too: one more page in the WAL for every save.
SAVE_STATE = (
    "INSERT INTO state VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)

#: Versions of what a save captures: (acknowledged ranges and status, last readings).
Versions = tuple[int, int]
#: Per channel, the last reading's (ts, value as JSON text).
LastReadings = dict[int, tuple[int, str]]
#: Given the last-readings version already saved: the current one, and the row text if newer.
LastReadingsRow = Callable[[int], tuple[int, str | None]]


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class StateRows:
    """The acknowledged ranges, the status fields and the sensor faults, and what is saved.

    Thread-safe: `lock` guards the ranges and the status fields (the uplink marks
    acknowledgements from its own thread). Faults change only inside the store's commits.
    """

    def __init__(self, state: Mapping[str, str], sent: SeqRanges) -> None:
        self.lock = threading.Lock()
        self._sent = sent
        self._status: dict[str, object] = json.loads(state.get("status", "{}"))
        self._faults: dict[str, dict[str, object]] = json.loads(state.get("faults", "{}"))
        self._version = 1
        self._saved: Versions = (0, 0)
        self._saved_at = 0.0
        self._acked_unsaved = 0  # seqs acknowledged since the ranges were last saved

    # --- what needs no more sending ---------------------------------------------------------

    def mark_sent(self, runs: Iterable[tuple[int, int]]) -> bool:
        """Add acknowledged seqs; True once enough are unsaved to save them now."""
        with self.lock:
            for lo, hi in runs:
                self._sent.add(lo, hi)
                self._acked_unsaved += hi - lo + 1
            self._version += 1
            return self._acked_unsaved >= ACK_SAVE_RECORDS

    def is_sent(self, seq: int) -> bool:
        """True if `seq` needs no more sending (acknowledged or deleted)."""
        with self.lock:
            return seq in self._sent

    def unsent_span(self, after: int, last: int) -> tuple[int, int] | None:
        """The first run of seqs in after+1..last that still needs sending, or None."""
        with self.lock:
            start = self._sent.next_missing(after + 1)
            if start > last:
                return None
            present = self._sent.next_present(start)
        return start, (last if present is None else min(last, present - 1))

    def unsent(self, last: int) -> tuple[int, int]:
        """How many of the seqs 1..last still need sending, and the first of them."""
        with self.lock:
            return last - self._sent.count_upto(last), self._sent.next_missing(1)

    def sent_ranges(self) -> list[tuple[int, int]]:
        """The ranges of seqs that need no more sending, lowest first."""
        with self.lock:
            return self._sent.ranges()

    def gone(self, runs: Iterable[tuple[int, int]]) -> None:
        """Seqs the storage budget deleted (after its commit): nothing can send them now."""
        with self.lock:
            for lo, hi in runs:
                self._sent.add(lo, hi)

    # --- status fields and sensor faults ----------------------------------------------------

    def set_status(self, fields: Mapping[str, object]) -> None:
        """Record status fields (saved with a coming commit)."""
        with self.lock:
            self._status.update(fields)
            self._version += 1

    def status(self) -> dict[str, object]:
        """The status fields recorded so far."""
        with self.lock:
            return dict(self._status)

    def fault(self, sensor: str, state: str, reason: str, ts: int, seq: int) -> tuple[str, str]:
        """Keep the latest sensor_fault / sensor_ok of a sensor; the ``faults`` row to save."""
        entry: dict[str, object] = {"state": state, "ts": ts, "seq": seq}
        if reason:
            entry["reason"] = reason
        self._faults[sensor] = entry
        return ("faults", _compact(self._faults))

    def faults(self) -> dict[str, dict[str, object]]:
        """The latest sensor_fault / sensor_ok per sensor: state, ts, seq and reason."""
        # No lock: the writer holds the store's through fsync. Entries are replaced, never
        # changed, and copying a dict is atomic in CPython, so this copy is consistent.
        return {sensor: dict(entry) for sensor, entry in dict(self._faults).items()}

    # --- saving -------------------------------------------------------------------------------

    def sent_row(self, extra_runs: Iterable[tuple[int, int]]) -> tuple[str, str]:
        """The ``done`` row with `extra_runs` added (seqs deleted by a transaction under way,
        in memory only once it is committed: see `gone`)."""
        with self.lock:
            sent = SeqRanges(self._sent.ranges())
        for lo, hi in extra_runs:
            sent.add(lo, hi)
        return ("done", json.dumps(sent.ranges(), separators=(",", ":")))

    def changed_rows(
        self, last_readings: LastReadingsRow, force: bool = False
    ) -> tuple[list[tuple[str, str]], Versions]:
        """State rows that changed since they were last saved, and the versions they capture.

        Unless forced they are saved at most every STATE_SAVE_S: a lost acknowledgement only
        means a record is sent twice, and flash wears with every page written.
        """
        rows: list[tuple[str, str]] = []
        if (
            not force
            and time.monotonic() - self._saved_at < STATE_SAVE_S
            and self._acked_unsaved < ACK_SAVE_RECORDS
        ):
            return rows, self._saved
        with self.lock:
            self._acked_unsaved = 0
            version = self._version
            if force or version != self._saved[0]:
                rows.append(("done", json.dumps(self._sent.ranges(), separators=(",", ":"))))
                rows.append(("status", _compact(self._status)))
        last_version, text = last_readings(self._saved[1])
        if text is not None:
            rows.append(("last_readings", text))
        return rows, (version, last_version)

    def saved(self, versions: Versions) -> None:
        """The rows of `changed_rows` are committed."""
        if versions != self._saved:
            self._saved_at = time.monotonic()
        self._saved = versions


def last_readings_json(last: LastReadings, channels: Mapping[int, Channel]) -> str:
    """The ``last_readings`` row: per (sensor, quantity) the newest reading, sorted."""
    latest: dict[tuple[str, str], tuple[int, str, Channel]] = {}
    for chan, (ts, text) in last.items():
        channel = channels[chan]
        key = (channel.sensor, channel.quantity)
        if key not in latest or latest[key][0] <= ts:
            latest[key] = (ts, text, channel)
    items = []
    for (_sensor, _quantity), (ts, text, channel) in sorted(latest.items()):
        flags = f',"flags":{json.dumps(channel.flags)}' if channel.flags else ""
        items.append(f'{{{channel.head},"v":{text},"ts":{ts}{flags}}}')
    return "[" + ",".join(items) + "]"


# --- the rows as a reader of the file finds them ----------------------------------------------


def read_state(db: sqlite3.Connection) -> dict[str, str]:
    """Every row of table state."""
    return dict(db.execute("SELECT key, value FROM state").fetchall())


def last_seq(db: sqlite3.Connection) -> int:
    """The highest seq ever committed (0 for none): AUTOINCREMENT keeps it in sqlite_sequence."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return int(row[0]) if row else 0


def last_record_seq(db: sqlite3.Connection) -> int:
    """The highest seq of an event or receipt (0 for none)."""
    row = db.execute(
        "SELECT seq FROM outbox INDEXED BY outbox_records WHERE kind > 0 ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return int(row[0]) if row else 0


def load_sent(db: sqlite3.Connection, state: Mapping[str, str], last: int) -> SeqRanges:
    """The seqs that need no more sending: the saved ranges, and every seq below the oldest
    stored row (those no longer exist: nothing can send them any more)."""
    sent = SeqRanges(tuple(pair) for pair in json.loads(state.get("done", "[]")))
    oldest = db.execute("SELECT min(seq) FROM outbox").fetchone()[0]
    sent.add(1, (int(oldest) if oldest is not None else last + 1) - 1)
    return sent


def load_last_readings(
    state: Mapping[str, str], channel_ids: Mapping[tuple[str, str, str], int]
) -> LastReadings:
    """The saved ``last_readings`` row, per channel."""
    last: LastReadings = {}
    for item in json.loads(state.get("last_readings", "[]")):
        key = (item["sensor"], item["q"], item.get("flags", ""))
        if key in channel_ids:
            last[channel_ids[key]] = (int(item["ts"]), str(item["v"]))
    return last


def first_ts(db: sqlite3.Connection, seq: int) -> int | None:
    """The ts of the first stored record at or after `seq` (the oldest unsent one's)."""
    row = db.execute("SELECT ts FROM outbox WHERE seq >= ? ORDER BY seq LIMIT 1", (seq,)).fetchone()
    return int(row[0]) if row else None
