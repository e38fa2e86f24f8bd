"""The text report of ``cunxiang status``: a `StationStatus` as a technician reads it.

Why this module exists: one rendering for the live answer and for the database's view, so the
two look the same and differ only where they must — the first lines say which of them is shown
and, for the database, how old it is. Times are local, with how long ago.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from gateway.status.model import StationStatus


def when(ts: object, now: int) -> str:
    """A local time and how long ago, for a technician ("never" for no time)."""
    if not isinstance(ts, int) or isinstance(ts, bool):
        return "never"
    local = dt.datetime.fromtimestamp(ts / 1000).strftime("%Y-%m-%d %H:%M:%S")
    return f"{local} ({_ago(now - ts)})"


def _ago(ms: int) -> str:
    seconds = ms // 1000
    if seconds < 0:
        return "in the future: check the clock"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _floor(ts: int | None) -> str:
    """The time floor (docs/protocol.md §6.1) in UTC: messages that expired before it are old."""
    if ts is None:
        return "not set"
    return dt.datetime.fromtimestamp(ts / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(status: StationStatus, note: str = "") -> str:
    """The human-readable report; `note` says why the database is shown (if it is)."""
    now = status.ts
    lines = [f"Station {status.station} · area {status.area} · database {status.database}"]
    lines += _source_lines(status, note)
    lines += _broker_lines(status)
    oldest = when(status.oldest_unsent_ts, now) if status.oldest_unsent_ts else "-"
    lines.append(
        f"Backlog:   {status.backlog:,} records not yet at the centre"
        + (f", oldest from {oldest}" if status.backlog else "")
    )
    lines.append(
        f"Clock:     {'synced' if status.clock_synced else 'NOT synced'} · "
        f"time floor: {_floor(status.time_floor_ts)} · audio: {status.audio or '?'}"
    )
    lines.append(_programme_line(status))
    lines += ["", *_sensor_lines(status), "", *_alert_lines(status)]
    lines += ["", *_receipt_lines(status), "", *_programme_lines(status)]
    return "\n".join(lines)


def _source_lines(status: StationStatus, note: str) -> list[str]:
    pid = f"pid {status.pid}, " if status.pid else ""
    if status.source == "service":
        return [f"Service:   running ({pid}boot {status.boot}) · live answer from the service"]
    recorded = when(status.recorded_ts, status.ts)
    if status.service_running:
        head = f"Service:   running ({pid}boot {status.boot}) but NOT ANSWERING"
    else:
        head = "Service:   NOT RUNNING"
    lines = [f"{head} · showing the database's view, recorded {recorded}"]
    if note:
        lines.append(f"           ({note})")
    return lines


def _broker_lines(status: StationStatus) -> list[str]:
    now = status.ts
    broker = status.broker or "?"
    if status.broker_connected:
        lines = [f"Broker:    connected to {broker} since {when(status.connected_ts, now)}"]
    else:
        lines = [f"Broker:    NOT connected ({broker})"]
        if status.last_error:
            lines.append(f"           last error: {status.last_error}")
    lines.append(f"Last sync: {when(status.last_publish_ts, now)} (last PUBACK from the broker)")
    return lines


def _sensor_lines(status: StationStatus) -> list[str]:
    lines = [f"{'Sensor':16} {'quantity':16} {'value':>10}  {'taken':32} state"]
    readings: dict[str, list[dict[str, Any]]] = {}
    for reading in status.last_readings:
        readings.setdefault(str(reading.get("sensor")), []).append(reading)
    for name, state in status.sensors.items():
        fault = status.faults.get(name, {})
        flag = "ok"
        if state != "ok":
            since = when(fault.get("ts"), status.ts) if fault else "?"
            flag = f"FAULT {fault.get('reason', '')} since {since}".replace("  ", " ")
        for reading in readings.get(name) or [{"q": "-", "ts": None}]:
            value = json.dumps(reading["v"]) if "v" in reading else "-"
            taken = when(reading.get("ts"), status.ts)
            lines.append(f"  {name:14} {reading.get('q')!s:16} {value:>10}  {taken:32} {flag}")
    if not status.sensors:
        lines.append("  (no sensors, no readings yet)")
    return lines


def _alert_lines(status: StationStatus) -> list[str]:
    lines = ["Recent alerts (newest first)"]
    for alert in status.alerts:
        lines.append(
            f"  {alert.get('id')!s:40} {alert.get('level') or '-'!s:7} "
            f"{alert.get('event') or '':12} {alert.get('state')!s:12} "
            f"received {when(alert.get('received_ts'), status.ts)}"
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
        lines.append(
            f"  #{receipt.get('seq')!s:<8} {when(receipt.get('ts'), status.ts):32} "
            f"{receipt.get('alert')!s:40} {receipt.get('status')!s:12} {extra}".rstrip()
        )
    if not status.receipts:
        lines.append("  (none)")
    return lines


def _due(ts: object, now: int) -> str:
    """A programme item's local start time and how soon it is due."""
    if not isinstance(ts, int) or isinstance(ts, bool):
        return "?"
    local = dt.datetime.fromtimestamp(ts / 1000).strftime("%Y-%m-%d %H:%M:%S")
    seconds = max(0, ts - now) // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{local} (in {seconds // size} {unit})"
    return f"{local} (in {seconds} s)"


def _programme_line(status: StationStatus) -> str:
    """The next routine item (docs/protocol.md §10), and why none plays if the clock is off."""
    paused = status.programme_state == "clock_unsynced"
    note = " — NOT PLAYING: the clock is not synced" if paused else ""
    nxt = status.next_programme
    if not nxt:
        return f"Programme: no item scheduled{note}"
    return f"Programme: next {nxt.get('item')} of {nxt.get('id')} at {_due(nxt.get('at'), status.ts)}{note}"


def _programme_lines(status: StationStatus) -> list[str]:
    lines = ["Next programme items"]
    for item in status.programmes:
        title = f"{item.get('item')} ({item.get('id')})"
        lines.append(f"  {_due(item.get('at'), status.ts):32} {title}")
    if not status.programmes:
        lines.append("  (none)")
    return lines
