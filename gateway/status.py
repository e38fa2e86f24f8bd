"""What `cunxiang status` shows, read from the station database alone.

Why this module exists: when something is wrong a technician runs ``cunxiang status`` on the
box, often while the service is running. Everything here comes from the SQLite file, opened
read-only (a WAL reader never blocks the service's writer): the backlog and its oldest record,
the last successful publish and whether the broker is connected (recorded by the service and
the uplink through `Store.set_status`), the last value of every sensor, sensor faults (the
latest ``sensor_fault``/``sensor_ok`` per sensor), recent alerts and receipts. Whether the
service is running is read from the database's lock file (the service holds it while it runs).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from gateway import __version__, store_schema, time_floor
from gateway.alert_ids import public_id
from gateway.store import SeqRanges, alert_item, now_ms


class StatusError(Exception):
    """The database cannot be read; the message says why and what to do."""


@dataclass
class StationStatus:
    """Everything `cunxiang status` reports, as read from the database."""

    path: Path
    now_ms: int
    station_id: str | None
    service_running: bool
    recorded: dict[str, object]
    last_seq: int
    backlog: int
    oldest_unsent_ts: int | None
    last_readings: list[dict[str, object]] = field(default_factory=list)
    faults: dict[str, dict[str, object]] = field(default_factory=dict)
    alerts: list[dict[str, object]] = field(default_factory=list)
    receipts: list[dict[str, object]] = field(default_factory=list)
    time_floor_ms: int | None = None

    def sensors(self) -> dict[str, str]:
        """Sensor name → ``ok`` or ``fault`` (the service's view if it runs, else the events')."""
        states = {str(r["sensor"]): "ok" for r in self.last_readings}
        for sensor, fault in self.faults.items():
            states[sensor] = "fault" if fault.get("state") == "fault" else "ok"
        live = self.recorded.get("sensors")
        if self.service_running and isinstance(live, dict):
            states.update({str(k): str(v) for k, v in live.items()})
        return dict(sorted(states.items()))

    def broker_connected(self) -> bool:
        """True if the running service says its broker connection is up."""
        return self.service_running and self.recorded.get("broker_connected") is True


def _service_running(path: Path) -> bool:
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


def _open(path: Path) -> sqlite3.Connection:
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


def read_status(path: Path, *, alerts: int = 10, receipts: int = 10) -> StationStatus:
    """Read the status of the station whose database is at `path`; StatusError if impossible."""
    path = Path(path)
    running = _service_running(path)
    db = _open(path)
    try:
        return _read(db, path, running, alerts, receipts)
    except sqlite3.Error as exc:
        raise StatusError(f"{path}: cannot read the database ({exc})") from None
    finally:
        db.close()


def _read(
    db: sqlite3.Connection, path: Path, running: bool, n_alerts: int, n_receipts: int
) -> StationStatus:
    state = dict(db.execute("SELECT key, value FROM state").fetchall())
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    last = int(row[0]) if row else 0
    done = SeqRanges(tuple(pair) for pair in json.loads(state.get("done", "[]")))
    oldest_row = db.execute("SELECT min(seq) FROM outbox").fetchone()[0]
    done.add(1, (int(oldest_row) if oldest_row is not None else last + 1) - 1)
    backlog = max(0, last - done.count_upto(last))
    oldest_ts = None
    if backlog:
        first = done.next_missing(1)
        found = db.execute(
            "SELECT ts FROM outbox WHERE seq >= ? ORDER BY seq LIMIT 1", (first,)
        ).fetchone()
        oldest_ts = int(found[0]) if found else None
    alert_rows = db.execute(
        "SELECT * FROM alerts ORDER BY received_ts DESC, rowid DESC LIMIT ?", (n_alerts * 4,)
    ).fetchall()
    alert_items = [a for a in map(alert_item, alert_rows) if a.get("kind") != "command"]
    receipt_rows = db.execute(
        "SELECT seq, ts, body FROM outbox INDEXED BY outbox_records "
        "WHERE kind > 0 AND kind = ? ORDER BY seq DESC LIMIT ?",
        (store_schema.KIND_RECEIPT, n_receipts),
    ).fetchall()
    return StationStatus(
        path=path,
        now_ms=now_ms(),
        station_id=state.get("station_id"),
        service_running=running,
        recorded=json.loads(state.get("status", "{}")),
        last_seq=last,
        backlog=backlog,
        oldest_unsent_ts=oldest_ts,
        last_readings=json.loads(state.get("last_readings", "[]")),
        faults=json.loads(state.get("faults", "{}")),
        alerts=alert_items[:n_alerts],
        receipts=[json.loads(f'{{"seq":{s},"ts":{t},{b}}}') for s, t, b in receipt_rows],
        time_floor_ms=_int_or_none(state.get(time_floor.STATE_KEY)),
    )


def _int_or_none(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def state_json(status: StationStatus, area: str) -> dict[str, object]:
    """The PROTOCOL.md §3 state fields plus ``last_readings``, ``alerts`` and ``receipts``."""
    recorded = status.recorded
    return {
        "online": status.broker_connected(),
        "ts": status.now_ms,
        "version": recorded.get("version", __version__),
        "boot": recorded.get("boot"),
        "area": area,
        "backlog": status.backlog,
        "oldest_unsent_ts": status.oldest_unsent_ts,
        "clock_synced": recorded.get("clock_synced"),
        "time_floor_ts": status.time_floor_ms,
        "audio": recorded.get("audio"),
        "sensors": status.sensors(),
        "next_programme": recorded.get("next_programme"),
        "station": status.station_id,
        "service_running": status.service_running,
        "broker_connected": status.broker_connected(),
        "last_publish_ts": recorded.get("last_publish_ts"),
        "last_error": recorded.get("last_error"),
        "database": str(status.path),
        "last_readings": status.last_readings,
        "alerts": [
            {
                **{k: a.get(k) for k in ("id", "state", "level", "received_ts", "updated_ts")},
                "id": public_id(str(a.get("id"))),
                "key": a.get("key"),
            }
            for a in status.alerts
        ],
        "receipts": status.receipts,
    }


def _when(ts: object, now: int) -> str:
    """A local time and how long ago, for a technician."""
    if not isinstance(ts, int):
        return "never"
    local = dt.datetime.fromtimestamp(ts / 1000).strftime("%Y-%m-%d %H:%M:%S")
    return f"{local} ({_ago(now - ts)})"


def _floor(ts: int | None) -> str:
    """The time floor (docs/protocol.md §6.1) in UTC: messages that expired before it are old."""
    if ts is None:
        return "not set"
    return dt.datetime.fromtimestamp(ts / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(ms: int) -> str:
    seconds = ms // 1000
    if seconds < 0:
        return "in the future: check the clock"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def render(status: StationStatus, area: str) -> str:
    """The human-readable report."""
    rec = status.recorded
    now = status.now_ms
    lines = [f"Station {status.station_id} · area {area} · database {status.path}"]
    if status.service_running:
        pid = f"pid {rec['pid']}, " if "pid" in rec else ""
        lines.append(
            f"Service:   running ({pid}boot {rec.get('boot', '?')}), "
            f"status recorded {_when(rec.get('updated_ts'), now)}"
        )
    else:
        lines.append("Service:   NOT RUNNING (values below are from when it last ran)")
    lines += _broker_lines(status)
    oldest = _when(status.oldest_unsent_ts, now) if status.oldest_unsent_ts else "-"
    lines.append(
        f"Backlog:   {status.backlog:,} records not yet at the centre"
        + (f", oldest from {oldest}" if status.backlog else "")
    )
    lines.append(
        f"Clock:     {'synced' if rec.get('clock_synced') else 'NOT synced'} · "
        f"time floor: {_floor(status.time_floor_ms)} · audio: {rec.get('audio', '?')}"
    )
    lines.append(_programme_line(rec))
    lines += ["", *_sensor_lines(status), "", *_alert_lines(status), "", *_receipt_lines(status)]
    return "\n".join(lines)


def _programme_line(rec: dict[str, object]) -> str:
    """The next programme item (docs/protocol.md §10), and why none plays if the clock is off."""
    nxt = rec.get("next_programme")
    paused = (
        " — NOT PLAYING: the clock is not synced"
        if rec.get("programmes") == "clock_unsynced"
        else ""
    )
    if not isinstance(nxt, dict):
        return f"Programme: no item scheduled{paused}"
    at = nxt.get("at")
    when = (
        dt.datetime.fromtimestamp(at / 1000).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(at, int)
        else "?"
    )
    return f"Programme: next {nxt.get('item')} of {nxt.get('id')} at {when}{paused}"


def _broker_lines(status: StationStatus) -> list[str]:
    rec = status.recorded
    now = status.now_ms
    broker = rec.get("broker", "?")
    if status.broker_connected():
        lines = [f"Broker:    connected to {broker} since {_when(rec.get('connected_ts'), now)}"]
    else:
        lines = [f"Broker:    NOT connected ({broker})"]
        if rec.get("last_error"):
            lines.append(f"           last error: {rec['last_error']}")
    lines.append(
        f"Last sync: {_when(rec.get('last_publish_ts'), now)} (last PUBACK from the broker)"
    )
    return lines


def _sensor_lines(status: StationStatus) -> list[str]:
    lines = [f"{'Sensor':16} {'quantity':16} {'value':>10}  {'taken':32} state"]
    sensors = status.sensors()
    readings: dict[str, list[dict[str, object]]] = {}
    for reading in status.last_readings:
        readings.setdefault(str(reading["sensor"]), []).append(reading)
    for name, state in sensors.items():
        fault = status.faults.get(name, {})
        flag = "ok"
        if state != "ok":
            since = _when(fault.get("ts"), status.now_ms) if fault else "?"
            flag = f"FAULT {fault.get('reason', '')} since {since}".replace("  ", " ")
        for reading in readings.get(name) or [{"q": "-", "v": "-", "ts": None}]:
            value = json.dumps(reading["v"]) if reading["v"] != "-" else "-"
            taken = _when(reading["ts"], status.now_ms)
            lines.append(f"  {name:14} {reading['q']!s:16} {value:>10}  {taken:32} {flag}")
    if not sensors:
        lines.append("  (no readings yet)")
    return lines


def _alert_lines(status: StationStatus) -> list[str]:
    lines = ["Recent alerts (newest first)"]
    for alert in status.alerts:
        body = alert.get("alert")
        event = body.get("event", "") if isinstance(body, dict) else alert.get("rule", "")
        lines.append(
            f"  {public_id(str(alert['id'])):40} {alert.get('level', '-')!s:7} {event!s:12} "
            f"{alert['state']!s:12} received {_when(alert['received_ts'], status.now_ms)}"
        )
    if not status.alerts:
        lines.append("  (none)")
    return lines


def _receipt_lines(status: StationStatus) -> list[str]:
    lines = ["Recent receipts (newest first)"]
    for receipt in status.receipts:
        extra = " ".join(
            f"{k}={v}" for k, v in receipt.items() if k not in ("seq", "ts", "alert", "status")
        )
        with contextlib.suppress(KeyError):
            lines.append(
                f"  #{receipt['seq']:<8} {_when(receipt['ts'], status.now_ms):32} "
                f"{receipt['alert']!s:40} {receipt['status']!s:12} {extra}".rstrip()
            )
    if not status.receipts:
        lines.append("  (none)")
    return lines
