"""Reading unsent records for the uplink, in its own thread, through its own connection.

Why this module exists: the uplink (gateway/uplink/link.py) drains the outbox while the
service keeps writing to it. A WAL reader never blocks the writer, and each query sees only
committed records, so nothing can be published before it is durable. What is sent is asked of
the store (its acknowledged ranges live in memory); how a record looks on the wire is
gateway/store/records.py's.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from gateway.store import records
from gateway.store.database_file import open_reader
from gateway.store.records import KIND_NAMES, Channel, OutboxRecord
from gateway.store.seq_ranges import runs_of

T = TypeVar("T")


class Outbox(Protocol):
    """The store as a reader sees it (gateway/store/outbox.py `Store`)."""

    path: Path

    def channels(self) -> dict[int, Channel]: ...

    def is_sent(self, seq: int) -> bool: ...

    def unsent_span(self, after: int) -> tuple[int, int] | None: ...


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Readings for one telemetry message: JSON objects in seq order, and the seqs they cover.

    ``cursor`` is the seq to continue after; ``size`` the bytes of the fragments joined by
    commas (one more each).
    """

    fragments: list[str]
    runs: list[tuple[int, int]]
    cursor: int
    size: int


class OutboxReader:
    """Reads unsent records for the uplink, in its own thread, through its own connection."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._db = open_reader(outbox.path)
        self._channels = outbox.channels()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

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
            if not self._outbox.is_sent(seq):
                out.append(
                    OutboxRecord(seq, KIND_NAMES[kind], ts, records.record_json(seq, ts, body))
                )
        return out, last

    def unsent_readings(self, after: int, limit: int, max_bytes: int) -> ReadingBatch | None:
        """The next unsent readings after seq `after`: at most `limit` of them, `max_bytes` of JSON."""
        while True:
            span = self._outbox.unsent_span(after)
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
        fragments = self._rendered(lambda: records.reading_jsons(rows, self._channels))
        size = sum(map(len, fragments)) + len(fragments)
        complete = len(rows) < limit
        if size > max_bytes and len(fragments) > 1:
            sizes = list(itertools.accumulate(len(text) + 1 for text in fragments))
            n = max(1, bisect.bisect_right(sizes, max_bytes))
            if n < len(rows):
                fragments, rows, size, complete = fragments[:n], rows[:n], sizes[n - 1], False
        runs = runs_of([row[0] for row in rows])
        return ReadingBatch(fragments, runs, end if complete else rows[-1][0], size)

    def records(self, from_seq: int, to_seq: int, limit: int) -> list[OutboxRecord]:
        """Stored records in the range, sent or not (for a resend)."""
        return self._rendered(
            lambda: records.stored_records(self._db, self._channels, from_seq, to_seq, limit)
        )

    def _rendered(self, render: Callable[[], T]) -> T:
        """`render()`, with this reader's copy of the channel table renewed if a channel is
        newer than it (a plain dict: the drain renders hundreds of thousands a second)."""
        try:
            return render()
        except KeyError:
            self._channels = self._outbox.channels()
            return render()
