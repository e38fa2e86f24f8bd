"""What the outbox holds, and the JSON each record goes on the wire as: written here once.

Why this module exists: a record is rendered as docs/protocol.md §4 (a reading inside a
telemetry batch), §5 (an event) or §7 (a receipt) by the uplink's drain, by a resend, by
``cunxiang status`` (recent receipts) and by ``cunxiang export`` (one line per record, with the
station in front). They must all say the same thing, so the shape is written once, here:
`record_json` for an event or a receipt, `reading_jsons` for readings (in bulk: the drain
renders hundreds of thousands a second, and a function call per reading would make its
rendering half as slow again), `render_rows` for a stored range of both. The ``data_dropped`` event the
store writes itself when it loses readings (§5) is built here too, once.

Readings are stored compactly (gateway/store/schema.py): a channel number and the value
already written as JSON text. A `Channel` keeps the members a channel's readings share,
rendered once: ``head`` before ``"v"``, ``tail`` after it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.store.schema import KIND_EVENT, KIND_READING, KIND_RECEIPT

RecordKind = Literal["reading", "event", "receipt"]
KIND_NAMES: dict[int, RecordKind] = {
    KIND_READING: "reading",
    KIND_EVENT: "event",
    KIND_RECEIPT: "receipt",
}
#: Event and receipt members that the store writes itself.
RESERVED_MEMBERS = frozenset({"seq", "ts"})
#: Timestamps before this (2020-01-01) come from a clock that was never set: such a record's
#: or log entry's age is unknown, so it is never "too old".
SANE_EPOCH_MS = 1_577_836_800_000
#: A stored row as queries select it: (seq, kind, ts, chan, v, body).
Row = tuple[int, int, int, Any, Any, Any]


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


@dataclass(slots=True)
class PendingRecord:
    """An event or receipt waiting for its transaction: its kind, ts and JSON members."""

    kind: int
    ts: int
    body: str
    fault: tuple[str, str, str] | None = None  # (sensor, "fault"|"ok", reason)
    memory_loss: bool = False  # the data_dropped event for readings a full disk pushed out


@dataclass(frozen=True, slots=True)
class Channel:
    """How the readings of one (sensor, quantity, flags) render: head before v, tail after."""

    sensor: str
    quantity: str
    flags: str  # a JSON array, or "" for none
    head: str
    tail: str


def channel(sensor: str, quantity: str, flags: str) -> Channel:
    """The channel of (sensor, quantity, flags as stored: JSON text or "")."""
    head = f'"sensor":{json.dumps(sensor)},"q":{json.dumps(quantity)}'
    tail = f',"flags":{flags}' if flags else ""
    return Channel(sensor, quantity, flags, head, tail)


def flags_json(flags: tuple[str, ...]) -> str:
    """Reading flags as stored: a JSON array, or "" for none; ValueError for a bad flag."""
    if not flags:
        return ""
    if not all(isinstance(flag, str) and flag for flag in flags):
        raise ValueError(f"flags must be non-empty strings, not {flags!r}")
    return json.dumps(list(flags), separators=(",", ":"))


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


# --- records handed to the store ------------------------------------------------------------


def event(type_: str, fields: Mapping[str, object], ts: int) -> PendingRecord:
    """An event (docs/protocol.md §5); ValueError if it cannot be one."""
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
    return PendingRecord(KIND_EVENT, ts, body, fault)


def receipt(alert_id: str, status: str, fields: Mapping[str, object], ts: int) -> PendingRecord:
    """An alert receipt (docs/protocol.md §7); ValueError if it cannot be one."""
    if not isinstance(alert_id, str) or not alert_id or not isinstance(status, str) or not status:
        raise ValueError(f"a receipt needs an alert id and a status: {alert_id!r}, {status!r}")
    if "alert" in fields or "status" in fields:
        raise ValueError("the alert id and status are arguments, not fields")
    body = json_members({"alert": alert_id, "status": status, **fields})
    return PendingRecord(KIND_RECEIPT, ts, body)


def data_dropped(
    count: int, from_seq: int | None, to_seq: int | None, reason: str, ts: int
) -> PendingRecord:
    """The event that reports readings the store lost (docs/protocol.md §5): the exact count
    and the first and last seq, or null seqs for readings that never had one."""
    fields = {"count": count, "from_seq": from_seq, "to_seq": to_seq, "reason": reason}
    return PendingRecord(KIND_EVENT, ts, json_members({"type": "data_dropped", **fields}))


# --- records as they go on the wire ---------------------------------------------------------


def record_json(seq: int, ts: int, body: str, opening: str = "{") -> str:
    """An event or a receipt as JSON (`opening` may carry members that go first)."""
    return f'{opening}"seq":{seq},"ts":{ts},{body}}}'


def reading_jsons(
    rows: Iterable[tuple[int, int, int, str]], channels: Mapping[int, Channel], opening: str = "{"
) -> list[str]:
    """Readings (seq, ts, chan, v) as JSON objects, in bulk (the drain's hot path)."""
    return [
        f'{opening}"seq":{seq},"ts":{ts},{ch.head},"v":{v}{ch.tail}}}'
        for seq, ts, chan, v in rows
        for ch in (channels[chan],)
    ]


def render_rows(rows: list[Row], channels: Mapping[int, Channel], opening: str = "{") -> list[str]:
    """Stored rows of any kind as JSON, in their order."""
    readings = iter(
        reading_jsons(
            [(seq, ts, chan, v) for seq, kind, ts, chan, v, _ in rows if kind == KIND_READING],
            channels,
            opening,
        )
    )
    return [
        next(readings) if kind == KIND_READING else record_json(seq, ts, body, opening)
        for seq, kind, ts, _, _, body in rows
    ]


def stored_records(
    db: sqlite3.Connection,
    channels: Mapping[int, Channel],
    from_seq: int,
    to_seq: int,
    limit: int,
) -> list[OutboxRecord]:
    """Records still stored with from_seq <= seq <= to_seq (at most `limit`; -1: all)."""
    rows = db.execute(
        "SELECT seq, kind, ts, chan, v, body FROM outbox WHERE seq BETWEEN ? AND ? "
        "ORDER BY seq LIMIT ?",
        (from_seq, to_seq, limit),
    ).fetchall()
    texts = render_rows(rows, channels)
    return [
        OutboxRecord(row[0], KIND_NAMES.get(row[1], "event"), row[2], text)
        for row, text in zip(rows, texts, strict=True)
    ]


def recent_receipts(db: sqlite3.Connection, n: int) -> list[dict[str, Any]]:
    """The `n` newest receipts in the database behind `db`, newest first."""
    rows = db.execute(
        "SELECT seq, ts, body FROM outbox INDEXED BY outbox_records "
        "WHERE kind > 0 AND kind = ? ORDER BY seq DESC LIMIT ?",
        (KIND_RECEIPT, n),
    ).fetchall()
    return [json.loads(record_json(seq, ts, body)) for seq, ts, body in rows]
