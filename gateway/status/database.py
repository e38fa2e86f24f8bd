"""The station's status as its database tells it, for when the service does not answer.

Why this module exists: ``cunxiang status`` asks the running service first
(gateway/status/server.py); when the service is stopped, crashed or hung, the database is what
is left. Everything here comes from the SQLite file, opened read-only (a WAL reader never
blocks the service's writer): the backlog and its oldest record, the status fields the service
and the uplink recorded with `Store.set_status` (saved every few seconds, so they lag), the last
value of every sensor, sensor faults (the latest ``sensor_fault``/``sensor_ok`` per sensor),
recent alerts and receipts. Whether the service is running is read from the database's lock
file (the service holds it while it runs).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.downlink import time_floor
from gateway.status.model import StationStatus, alert_summary, sensor_states
from gateway.store import schema as store_schema
from gateway.store.outbox import SeqRanges, alert_item, now_ms, recent_receipts


class StatusError(Exception):
    """The database cannot be read; the message says why and what to do."""


def service_running(path: Path) -> bool:
    """The service holds an exclusive lock on ``<db>.lock`` while it runs."""
    try:
        fd = os.open(f"{path}.lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def open_read_only(path: Path) -> sqlite3.Connection:
    """The station database, read-only; StatusError saying what is wrong if it cannot be."""
    if not path.exists():
        raise StatusError(
            f"{path}: no database yet (the service has not run, or storage.path points elsewhere)"
        )
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        if store_schema.is_blank(db):
            raise StatusError(f"{path}: the database is empty (the service has not run yet)")
        store_schema.check_ours(db)
    except store_schema.SchemaError as exc:
        raise StatusError(f"{path}: {exc}") from None
    except sqlite3.Error as exc:
        raise StatusError(
            f"{path}: cannot read the database ({exc}); run as root or as the service's user"
        ) from None
    return db


def read_status(path: Path, area: str, *, alerts: int = 10, receipts: int = 10) -> StationStatus:
    """The status of the station whose database is at `path`; StatusError if impossible."""
    path = Path(path)
    running = service_running(path)
    db = open_read_only(path)
    try:
        with db:  # one read transaction: every figure from the same moment
            db.execute("BEGIN")
            return _read(db, path, area, running, alerts, receipts)
    except sqlite3.Error as exc:
        raise StatusError(f"{path}: cannot read the database ({exc})") from None
    finally:
        db.close()


def _int_or_none(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _backlog(db: sqlite3.Connection, state: dict[str, str]) -> tuple[int, int | None]:
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    last = int(row[0]) if row else 0
    done = SeqRanges(tuple(pair) for pair in json.loads(state.get("done", "[]")))
    oldest_row = db.execute("SELECT min(seq) FROM outbox").fetchone()[0]
    done.add(1, (int(oldest_row) if oldest_row is not None else last + 1) - 1)
    backlog = max(0, last - done.count_upto(last))
    if not backlog:
        return 0, None
    found = db.execute(
        "SELECT ts FROM outbox WHERE seq >= ? ORDER BY seq LIMIT 1", (done.next_missing(1),)
    ).fetchone()
    return backlog, (int(found[0]) if found else None)


def _read(
    db: sqlite3.Connection, path: Path, area: str, running: bool, n_alerts: int, n_receipts: int
) -> StationStatus:
    state = dict(db.execute("SELECT key, value FROM state").fetchall())
    recorded: dict[str, Any] = json.loads(state.get("status", "{}"))
    backlog, oldest_ts = _backlog(db, state)
    alert_rows = db.execute(
        "SELECT * FROM alerts ORDER BY received_ts DESC, rowid DESC LIMIT ?", (n_alerts * 4,)
    ).fetchall()
    alert_items = [a for a in map(alert_item, alert_rows) if a.get("kind") != "command"]
    last_readings: list[dict[str, Any]] = json.loads(state.get("last_readings", "[]"))
    faults: dict[str, dict[str, Any]] = json.loads(state.get("faults", "{}"))
    live_sensors = recorded.get("sensors") if running else None
    return StationStatus(
        ts=now_ms(),
        version=recorded.get("version", __version__),
        boot=recorded.get("boot"),
        area=area,
        backlog=backlog,
        oldest_unsent_ts=oldest_ts,
        clock_synced=recorded.get("clock_synced"),
        audio=recorded.get("audio"),
        sensors=sensor_states(
            live_sensors if isinstance(live_sensors, dict) else {}, last_readings, faults
        ),
        station=state.get("station_id"),
        source="database",
        database=str(path),
        service_running=running,
        pid=recorded.get("pid") if running else None,
        recorded_ts=recorded.get("updated_ts"),
        broker=recorded.get("broker"),
        broker_connected=running and recorded.get("broker_connected") is True,
        connected_ts=recorded.get("connected_ts"),
        last_publish_ts=recorded.get("last_publish_ts"),
        last_error=recorded.get("last_error"),
        time_floor_ts=_int_or_none(state.get(time_floor.STATE_KEY)),
        faults=faults,
        last_readings=last_readings,
        alerts=[alert_summary(a) for a in alert_items[:n_alerts]],
        receipts=recent_receipts(db, n_receipts),
        programmes=[recorded["next_programme"]] if recorded.get("next_programme") else [],
        next_programme=recorded.get("next_programme"),
        programme_state=recorded.get("programme_state"),
    )
