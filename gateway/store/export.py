"""Readings and events out of the station's database, for a USB stick when the uplink is down.

Why this module exists: when a village's uplink is down for weeks (a flood takes the mast), a
technician carries the records to the centre instead (docs/technician-guide.zh.md "用U盘带走数据").
``cunxiang export`` writes what the database holds for a time range:

* ``jsonl``: one record per line, exactly as on the wire — a docs/protocol.md §4 reading
  flattened out of its batch, ``{"station", "seq", "ts", "sensor", "q", "v"[, "flags"]}``, or a
  §5 event ``{"station", "seq", "ts", "type", …}``. Each line names the station, because the
  centre de-duplicates on (station, seq) against what arrives later over MQTT.
* ``csv``: readings only, columns ``seq,ts,time,sensor,q,v,flags`` with a header; ``time`` is
  ISO 8601 in the box's local time, ``v`` is ``12.5`` or ``true``, ``flags`` are joined by
  ``;``.

It reads one consistent snapshot (a single read transaction) through a read-only connection,
so it can run while the service writes, and streams rows, so memory stays flat however many.
It is built on sqlite-utils, which only this command imports (the service never loads it:
about 22 MB of memory it does not need).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import sqlite_utils

from gateway.store import records
from gateway.store.database_file import StoreError, open_read_only
from gateway.store.records import Channel, Row
from gateway.store.schema import KIND_EVENT, KIND_READING

Format = Literal["jsonl", "csv"]
CSV_COLUMNS = ("seq", "ts", "time", "sensor", "q", "v", "flags")
ACCEPTED_TIMES = (
    "an ISO time (2026-07-01, 2026-07-01T08:00, 2026-07-01T08:00:00+08:00; without an offset "
    "it is the box's local time) or a span back from now (90s, 30min, 12h, 3d, 2w)"
)
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_UNIT_MS["w"] = 7 * _UNIT_MS["d"]
#: Rows rendered and written at a time.
CHUNK_ROWS = 4096


class ExportError(Exception):
    """The export cannot be made as asked; the message says why and what would work."""


class DatabaseError(ExportError):
    """The database is missing or cannot be read; the message names the file."""


def parse_time(text: str, now_ms: int) -> int:
    """Epoch ms of an ISO time or of a span back from `now_ms`; ValueError naming the forms."""
    match = _SPAN.match(text)
    if match:
        return now_ms - round(float(match.group(1)) * _UNIT_MS[match.group(2)])
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time: use {ACCEPTED_TIMES}") from None
    if when.tzinfo is None:
        when = when.astimezone()  # the box's local time
    return round(when.timestamp() * 1000)


@dataclass(frozen=True)
class Selection:
    """What to export: a time range [since, until) in epoch ms, and one sensor or all."""

    since_ms: int | None = None
    until_ms: int | None = None
    sensor: str | None = None


def export(
    database: Path,
    selection: Selection,
    fmt: Format,
    out: TextIO,
    progress: Callable[[int, float], None] | None = None,
) -> int:
    """Write the selected records to `out`; how many. ExportError for a bad selection.

    `progress(records, fraction)` is called about twice a second while it runs.
    """
    try:
        conn = open_read_only(database)
    except StoreError as exc:
        raise DatabaseError(str(exc)) from None
    db = sqlite_utils.Database(conn)
    try:
        conn.execute("BEGIN")  # one snapshot: the service may write meanwhile
        return _export(db, selection, fmt, out, progress)
    except sqlite3.Error as exc:
        raise DatabaseError(f"{database}: cannot read the database ({exc})") from None
    finally:
        conn.close()


def _export(
    db: sqlite_utils.Database,
    selection: Selection,
    fmt: Format,
    out: TextIO,
    progress: Callable[[int, float], None] | None,
) -> int:
    state = {row["key"]: row["value"] for row in db["state"].rows}
    station = str(state.get("station_id", ""))
    channels = {
        row["id"]: records.channel(row["sensor"], row["quantity"], row["flags"])
        for row in db["channels"].rows
    }
    named = db.execute(
        "SELECT DISTINCT json_extract('{' || body || '}', '$.sensor') FROM outbox "
        "INDEXED BY outbox_records WHERE kind > 0 AND kind = ?",
        (KIND_EVENT,),
    )
    sensors = sorted({c.sensor for c in channels.values()} | {n for (n,) in named if n})
    if selection.sensor is not None and selection.sensor not in sensors:
        known = ", ".join(sensors) if sensors else "none yet"
        raise ExportError(f"no sensor {selection.sensor!r} in this database; sensors: {known}")
    rows = _rows(db, selection, channels, readings_only=fmt == "csv")
    counted = _Progress(db, progress)
    if fmt == "csv":
        return _write_csv(rows, channels, out, counted)
    return _write_jsonl(rows, channels, station, out, counted)


def _rows(
    db: sqlite_utils.Database,
    selection: Selection,
    channels: dict[int, Channel],
    *,
    readings_only: bool,
) -> sqlite3.Cursor:
    """(seq, kind, ts, chan, v, body) in seq order: tuples, not sqlite-utils' dicts, because
    a million dicts cost more than the rest of the export."""
    where = ["kind = :reading" if readings_only else "kind IN (:reading, :event)"]
    params: dict[str, Any] = {"reading": KIND_READING, "event": KIND_EVENT}
    if selection.since_ms is not None:
        where.append("ts >= :since")
        params["since"] = selection.since_ms
    if selection.until_ms is not None:
        where.append("ts < :until")
        params["until"] = selection.until_ms
    if selection.sensor is not None:
        chans = [str(i) for i, c in channels.items() if c.sensor == selection.sensor]
        where.append(
            f"(chan IN ({','.join(chans)}) OR "
            "(kind = :event AND json_extract('{' || body || '}', '$.sensor') = :sensor))"
        )
        params["sensor"] = selection.sensor
    sql = (
        f"SELECT seq, kind, ts, chan, v, body FROM outbox WHERE {' AND '.join(where)} ORDER BY seq"
    )
    return db.execute(sql, params)


class _Progress:
    """Counts records and reports the share of the seq range done, at most twice a second."""

    def __init__(
        self, db: sqlite_utils.Database, report: Callable[[int, float], None] | None
    ) -> None:
        self.report = report
        self.count = 0
        self.next_at = time.monotonic() + 0.5
        low, high = next(db.query("SELECT min(seq) AS low, max(seq) AS high FROM outbox")).values()
        self.low, self.span = (low or 0), max(1, (high or 0) - (low or 0))

    def advance(self, rows: list[Row]) -> None:
        """`rows` are written."""
        self.count += len(rows)
        if self.report is not None and rows and time.monotonic() >= self.next_at:
            self.next_at = time.monotonic() + 0.5
            self.report(self.count, (rows[-1][0] - self.low) / self.span)


def _chunks(rows: sqlite3.Cursor) -> Iterator[list[Row]]:
    return iter(lambda: rows.fetchmany(CHUNK_ROWS), [])


def _write_jsonl(
    rows: sqlite3.Cursor,
    channels: dict[int, Channel],
    station: str,
    out: TextIO,
    counted: _Progress,
) -> int:
    """Each record as on the wire (gateway/store/records.py), the station's id first."""
    opening = f'{{"station":{json.dumps(station)},'
    for chunk in _chunks(rows):
        out.write("\n".join(records.render_rows(chunk, channels, opening)) + "\n")
        counted.advance(chunk)
    return counted.count


def _write_csv(
    rows: sqlite3.Cursor, channels: dict[int, Channel], out: TextIO, counted: _Progress
) -> int:
    out.write(_csv_line(CSV_COLUMNS) + "\n")
    local_time = _LocalTime()
    # A channel's cells are quoted once (csv rules); seq, ts, time and v never need quoting.
    cells = {
        chan: (
            _csv_line((ch.sensor, ch.quantity)),
            _csv_line((";".join(json.loads(ch.flags) if ch.flags else []),)),
        )
        for chan, ch in channels.items()
    }
    write = out.write
    for chunk in _chunks(rows):
        for seq, _kind, ts, chan, v, _body in chunk:
            names, flags = cells[chan]
            write(f"{seq},{ts},{local_time(ts)},{names},{v},{flags}\n")
        counted.advance(chunk)
    return counted.count


def _csv_line(values: tuple[str, ...]) -> str:
    """Cells as csv writes them, without the line end ("" for one empty cell)."""
    if values == ("",):
        return ""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()[:-1]


class _LocalTime:
    """ISO 8601 in the box's local time (its offset at that moment), to the millisecond.

    Readings come many to a second: the date, time and offset are worked out once per second.
    """

    def __init__(self) -> None:
        self.second = -1
        self.head = self.offset = ""

    def __call__(self, ts: int) -> str:
        second, ms = divmod(ts, 1000)
        if second != self.second:
            local = dt.datetime.fromtimestamp(second).astimezone()
            self.second = second
            self.head = local.strftime("%Y-%m-%dT%H:%M:%S")
            self.offset = local.isoformat()[19:]
        return f"{self.head}.{ms:03d}{self.offset}"
