"""Readings waiting for their commit, the channel table, and the last value of each channel.

Why this module exists: ingest must cost a list append, not a disk write (docs/performance.md),
so a reading handed to the store waits here, already reduced to what its outbox row holds
(ts, channel number, value as JSON text), until the store's next commit takes the whole
buffer. A channel is one (sensor, quantity, flags) triple, numbered once for the life of the
file (table ``channels``, gateway/store/schema.py). The buffer also keeps each channel's last
value for ``cunxiang status`` (the ``last_readings`` state row, gateway/store/state_rows.py).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping
from typing import Protocol

from gateway.store import records, state_rows
from gateway.store.records import Channel, value_json

#: Buffered readings that wake the committer thread before its interval is up.
EARLY_COMMIT_ROWS = 20_000
#: Buffered readings at which the caller of `add` pays for a commit itself (back-pressure).
INLINE_COMMIT_ROWS = 50_000

ReadingRow = tuple[int, int, str]  # (ts, chan, v)
ChannelRow = tuple[int, str, str, str]  # (id, sensor, quantity, flags)


class AddReading(Protocol):
    """`ReadingBuffer.add`, which the store offers as its own `add_reading`."""

    def __call__(
        self,
        sensor: str,
        quantity: str,
        value: float | bool,
        ts: int,
        flags: tuple[str, ...] = (),
    ) -> None: ...


class ReadingBuffer:
    """The readings not yet committed, and the channels they use. Thread-safe.

    From EARLY_COMMIT_ROWS readings waiting on, `add` sets `wake` (the committer thread's);
    from INLINE_COMMIT_ROWS on, it calls `back_pressure(pending)` (outside the lock): the
    store's writer then commits in the caller's thread, or trims the buffer while the disk is
    full.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        state: Mapping[str, str],
        *,
        wake: threading.Event,
        back_pressure: Callable[[int], None],
    ) -> None:
        self.lock = threading.Lock()
        self._wake = wake
        self._back_pressure = back_pressure
        self._rows: list[ReadingRow] = []
        self._new_channels: list[ChannelRow] = []
        self._channels: dict[int, Channel] = {}
        self._channel_ids: dict[tuple[str, str, str], int] = {}
        for chan, sensor, quantity, flags in db.execute(
            "SELECT id, sensor, quantity, flags FROM channels"
        ):
            self._channels[chan] = records.channel(sensor, quantity, flags)
            self._channel_ids[(sensor, quantity, flags)] = chan
        self._next_channel = max(self._channels, default=0) + 1
        self._intern: dict[tuple[str, str, tuple[str, ...]], int] = {}
        self._last = state_rows.load_last_readings(state, self._channel_ids)
        self._last_version = 0
        #: Readings taken by a commit still under way (see `Store.backlog`).
        self.committing = 0
        #: Readings dropped from the buffer while the disk was full, not yet reported.
        self.lost = 0

    def add(
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
        with self.lock:
            chan = self._intern.get(key)
            if chan is None:
                chan = self._new_channel(sensor, quantity, flags)
            self._rows.append((ts, chan, text))
            self._last[chan] = (ts, text)
            self._last_version += 1
            pending = len(self._rows)
        if pending >= EARLY_COMMIT_ROWS:
            if not self._wake.is_set():  # Event.set() takes a lock: a tenth of bulk ingest's CPU
                self._wake.set()
            if pending >= INLINE_COMMIT_ROWS:
                self._back_pressure(pending)

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
        flags_text = records.flags_json(tuple(flags))
        triple = (sensor, quantity, flags_text)
        chan = self._channel_ids.get(triple)
        if chan is None:
            chan = self._next_channel
            self._next_channel += 1
            self._channels[chan] = records.channel(sensor, quantity, flags_text)
            self._channel_ids[triple] = chan
            self._new_channels.append((chan, sensor, quantity, flags_text))
        self._intern[(sensor, quantity, tuple(flags))] = chan
        return chan

    def take(self) -> tuple[list[ReadingRow], list[ChannelRow]]:
        """Everything waiting, for a commit (counted in `committing` until it ends)."""
        with self.lock:
            rows, self._rows = self._rows, []
            channels, self._new_channels = self._new_channels, []
            self.committing = len(rows)
        return rows, channels

    def put_back(
        self, rows: list[ReadingRow], channels: list[ChannelRow], limit: int | None = None
    ) -> None:
        """A commit failed: its readings wait again, first (at most `limit`: see `trim`)."""
        with self.lock:
            self._rows[:0] = rows
            self._new_channels[:0] = channels
            if limit is not None:
                self._trim(limit)

    def trim(self, limit: int) -> None:
        """Drop the oldest readings beyond `limit`, counting them in `lost`."""
        with self.lock:
            self._trim(limit)

    def _trim(self, limit: int) -> None:
        overflow = len(self._rows) - limit
        if overflow > 0:
            del self._rows[:overflow]
            self.lost += overflow

    def waiting(self) -> tuple[int, int | None]:
        """Readings not committed yet (those a commit is writing too), and the oldest ts."""
        with self.lock:
            oldest = self._rows[0][0] if self._rows else None
            return len(self._rows) + self.committing, oldest

    def channels(self) -> dict[int, Channel]:
        """How the readings of each channel render: a copy of the table as it is now."""
        with self.lock:
            return dict(self._channels)

    def last_readings_row(self, saved_version: int) -> tuple[int, str | None]:
        """The last readings' version, and their state row if newer than `saved_version`."""
        with self.lock:
            version = self._last_version
            if version == saved_version:
                return version, None
            return version, state_rows.last_readings_json(self._last, self._channels)
