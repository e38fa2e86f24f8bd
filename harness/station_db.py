"""The station's database looked at from outside: a backlog seeded, the seqs committed, its health.

Why this module exists: the fault scenarios, the crash loop and the benchmarks judge the
centre's ledger against what the station had committed, and some give the station a backlog
to drain before a fault strikes. `seed_backlog` commits readings with counting values straight
into the database through the station's own store (no service may be running);
`committed_seq` reads ``sqlite_sequence``, the highest seq ever committed, which survives the
deletion of acknowledged rows (docs/performance.md: the one reader of it outside the store);
the others peek read-only while the service runs or after it was killed.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from gateway.config.loader import load_config
from gateway.store.outbox import open_store


def seed_backlog(config_path: Path, count: int, sensor: str = "seed", start: int = 0) -> int:
    """Commit `count` readings of `sensor` with values start, start+1, …; the last seq."""
    store = open_store(load_config(config_path))
    try:
        ts = int(time.time() * 1000)
        for i in range(count):
            store.add_reading(sensor, "water_level_m", float(start + i), ts)
        store.flush()
        return store.last_seq
    finally:
        store.close()


def _connect_ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def committed_seq(db: Path) -> int:
    """The highest seq ever committed (sqlite_sequence survives deletions)."""
    conn = _connect_ro(db)
    try:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def settled_committed_seq(db: Path, quiet_s: float = 1.0, timeout: float = 30.0) -> int:
    """The last committed seq once it has stopped growing for `quiet_s` (read-only peeks)."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seq = committed_seq(db)
        if seq != last:
            last, since = seq, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.1)
    return last


def stored_max_seq(db: Path) -> int:
    """The highest seq still stored (not yet acknowledged and deleted)."""
    conn = _connect_ro(db)
    try:
        row = conn.execute("SELECT max(seq) FROM outbox").fetchone()
        return int(row[0] or 0)
    finally:
        conn.close()


def count_readings(db: Path, after: int, upto: int) -> int:
    """Readings stored with after < seq <= upto."""
    conn = _connect_ro(db)
    try:
        row = conn.execute(
            "SELECT count(*) FROM outbox WHERE seq > ? AND seq <= ? AND kind = 0", (after, upto)
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def integrity(db: Path) -> str:
    """`PRAGMA integrity_check` of the database: "ok" or what is broken."""
    conn = _connect_ro(db)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)
    finally:
        conn.close()
