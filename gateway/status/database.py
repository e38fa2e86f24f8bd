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

import json
import sqlite3
from pathlib import Path
from typing import Any

from drivers.base import now_ms
from gateway import __version__
from gateway.downlink import time_floor
from gateway.status.model import StationStatus, alert_summary, sensor_states
from gateway.store import alert_log, records, state_rows
from gateway.store.database_file import StoreError, open_read_only, service_running
from gateway.store.state_rows import StateRows


class StatusError(Exception):
    """The database cannot be read; the message says why and what to do."""


def read_status(path: Path, area: str, *, alerts: int = 10, receipts: int = 10) -> StationStatus:
    """The status of the station whose database is at `path`; StatusError if impossible."""
    path = Path(path)
    running = service_running(path)
    try:
        db = open_read_only(path)
    except StoreError as exc:
        raise StatusError(str(exc)) from None
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


def _backlog(db: sqlite3.Connection, saved: StateRows, last: int) -> tuple[int, int | None]:
    """What the store's backlog would say, from the saved rows (acknowledgements lag)."""
    count, first = saved.unsent(last)
    return (count, state_rows.first_ts(db, first)) if count > 0 else (0, None)


def _read(
    db: sqlite3.Connection, path: Path, area: str, running: bool, n_alerts: int, n_receipts: int
) -> StationStatus:
    state = state_rows.read_state(db)
    last = state_rows.last_seq(db)
    saved = StateRows(state, state_rows.load_sent(db, state, last))
    recorded: dict[str, Any] = saved.status()
    backlog, oldest_ts = _backlog(db, saved, last)
    entries = [e for e in alert_log.recent(db, n_alerts * 4) if e.record.kind != "command"]
    last_readings: list[dict[str, Any]] = json.loads(state.get("last_readings", "[]"))
    faults: dict[str, dict[str, Any]] = saved.faults()
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
        alerts=[alert_summary(e) for e in entries[:n_alerts]],
        receipts=records.recent_receipts(db, n_receipts),
        programmes=[recorded["next_programme"]] if recorded.get("next_programme") else [],
        next_programme=recorded.get("next_programme"),
        programme_state=recorded.get("programme_state"),
    )
