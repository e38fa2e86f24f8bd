"""The alert log within the storage budget: compact finished alerts, forget ancient ids.

Why this module exists: every accepted alert is logged (gateway/store/outbox.py, table ``alerts``) so
that a restart resumes it and a replayed id never plays twice (docs/protocol.md §6.1, §9). Kept as
it arrived, one CAP alert with a few MiB of inline audio is a few MiB of database for ever, and
the budget could only make room by deleting unsent readings. So:

* while an alert is unfinished its record holds the signed payload once (what a restart needs
  to play it again) plus a small summary;
* when it reaches a final state (played, failed, cancelled, expired, superseded) the record
  becomes a compact one — key, id, level, status, times, payload SHA-256 — and the payload
  (with its audio) is gone;
* an id whose alert was received before the *prune horizon* (the time floor minus
  ``security.max_alert_lifetime_s``) may be deleted: any message naming it now would be
  ``expired`` whatever the log says (the intake, which owns the floor, registers the prune
  with the store's budget). The newest local broadcast is kept, so its number
  (``local:<rule>:<n>``) never goes back;
* the storage budget counts the whole file (SQLite page counts) and, on a new database
  (``auto_vacuum = INCREMENTAL``), gives freed pages back to the file system.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Mapping
from typing import Any

#: Alert-log states after which a broadcast never plays again.
FINAL_STATES = frozenset(
    {"played", "failed", "cancelled", "expired", "superseded", "rejected", "done"}
)
#: Received timestamps before this (2020-01-01) come from a clock that was never set: such an
#: entry's age is unknown, so it is never pruned.
SANE_EPOCH_MS = 1_577_836_800_000
#: Alert summary members kept in a compact record (what `cunxiang status` shows).
SUMMARY_FIELDS = ("id", "sender", "sent", "expires", "msg_type", "status", "level", "event")
#: Record members kept in a compact record.
COMPACT_FIELDS = (
    "kind",
    "format",
    "key",
    "level",
    "expires_ms",
    "silent",
    "payload_sha256",
    "rule",
    "repeat",
)
#: Free pages given back to the file system per budget run at most (1 KiB pages), and the
#: fewest worth the writes (flash wears with every page moved).
VACUUM_PAGES = 16_384
VACUUM_MIN_PAGES = 256


def prune_horizon_ms(floor_ms: int, max_alert_lifetime_s: int) -> int:
    """Entries received before this may leave the log (docs/protocol.md §6.1): any alert
    sent before it expired by the time floor at the latest, so a replay can only be
    ``expired``; a command's lifetime is far shorter still."""
    return floor_ms - max_alert_lifetime_s * 1000


def payload_fields(payload: bytes) -> dict[str, Any]:
    """The signed payload as record members: text when it is UTF-8, else base64."""
    digest = hashlib.sha256(payload).hexdigest()
    try:
        return {"payload": payload.decode("utf-8"), "payload_sha256": digest}
    except UnicodeDecodeError:
        encoded = base64.b64encode(payload).decode("ascii")
        return {"payload_b64": encoded, "payload_sha256": digest}


def stored_payload(record: Mapping[str, Any]) -> bytes | None:
    """The signed payload a record holds (see `payload_fields`), or None."""
    if isinstance(record.get("payload_b64"), str):
        return base64.b64decode(record["payload_b64"])
    if isinstance(record.get("payload"), str):
        return str(record["payload"]).encode("utf-8")
    return None


def summary(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The few alert fields a log entry keeps for `cunxiang status` (no text, no audio)."""
    return {name: alert[name] for name in SUMMARY_FIELDS if name in alert}


def compact_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A finished alert's record: key, level, times, payload hash; no payload, no audio."""
    compact = {name: record[name] for name in COMPACT_FIELDS if name in record}
    alert = record.get("alert")
    if isinstance(alert, Mapping):
        compact["alert"] = summary(alert)
    if record.get("text") is not None and record.get("kind") == "local":
        compact["text"] = str(record["text"])[:200]
    if record.get("clip") is not None:
        compact["clip"] = record["clip"]
    compact["compact"] = True
    return compact


def compacted(db: sqlite3.Connection, alert_id: str) -> str | None:
    """The compact record text for an entry, or None if it is compact already (or absent)."""
    row = db.execute("SELECT record FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        return None
    record = json.loads(str(row[0]))
    if record.get("compact"):
        return None
    return json.dumps(compact_record(record), ensure_ascii=False, separators=(",", ":"))


def compact(db: sqlite3.Connection, alert_id: str) -> None:
    """Replace the record of a finished alert by its compact form (inside the caller's lock)."""
    text = compacted(db, alert_id)
    if text is not None:
        db.execute("UPDATE alerts SET record = ? WHERE id = ?", (text, alert_id))


def prune(db: sqlite3.Connection, floor_ms: int, max_alert_lifetime_s: int) -> int:
    """Delete finished entries received before the prune horizon; the number deleted.

    Only entries with a trustworthy received time (the clock was set), and for alerts only
    once their effective expiry is at or before the floor. Unfinished ones stay whatever
    their age (a restart still owes them a receipt), and so does the newest local
    broadcast (its number must not be used again).
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
    """Compact every finished alert still holding its payload (e.g. from an older release)."""
    states = ",".join("?" * len(FINAL_STATES))
    ids = [
        str(row[0])
        for row in db.execute(
            f"SELECT id FROM alerts WHERE state IN ({states}) AND record NOT LIKE '%\"compact\":true%'",
            sorted(FINAL_STATES),
        )
    ]
    for alert_id in ids:
        compact(db, alert_id)
    return len(ids)


def give_back_free_pages(db: sqlite3.Connection) -> int:
    """On an ``auto_vacuum = INCREMENTAL`` file, return free pages to the file system."""
    if int(db.execute("PRAGMA auto_vacuum").fetchone()[0]) != 2:
        return 0
    free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
    if free < VACUUM_MIN_PAGES:
        return 0
    db.execute(f"PRAGMA incremental_vacuum({min(free, VACUUM_PAGES)})").fetchall()
    return min(free, VACUUM_PAGES)


def highest_local_number(db: sqlite3.Connection) -> int:
    """The highest n of the ``local:<rule>:<n>`` ids in the log (0 if none)."""
    highest = 0
    for (alert_id,) in db.execute("SELECT id FROM alerts WHERE id LIKE 'local:%'"):
        tail = str(alert_id).rsplit(":", 1)[-1]
        if tail.isdigit():
            highest = max(highest, int(tail))
    return highest
