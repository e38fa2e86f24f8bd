"""The station's status as the running service knows it now: the one builder in the service.

Why this module exists: the database's copy of the status is saved every few seconds, so right
after a restart — when a technician looks most — it says "not connected" while the service is
already draining. This builds the `StationStatus` (gateway/status/model.py) from the service's
memory instead: the uplink's connection, the store's backlog and recorded uplink fields, the
sensors' health and last values, the clock, the audio queue, recent alerts and receipts and the
next programme items. Everything the service says about itself is projected from it: the
docs/protocol.md §3 state the uplink publishes (`protocol_state`), the status socket's answer
(`status_json`), the fields recorded in the database for when the service does not answer
(`recorded_status`), and the line in ``systemctl status``. With ``detail=False`` it leaves out
what only the status socket shows (the database's alerts, receipts and faults).

Everything runs on the event loop and must stay within a few milliseconds: it reads memory, and
SQLite only through the store's reader connection (a WAL reader never waits for the writer).
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from gateway import __version__
from gateway.config.model import Config
from gateway.parts import Parts
from gateway.status.model import StationStatus, alert_summary

#: How many alerts and receipts a live answer lists.
RECENT = 10


class LiveStation(Protocol):
    """What the builder reads from the running service (gateway/service.py `Station`)."""

    @property
    def config(self) -> Config: ...
    @property
    def parts(self) -> Parts: ...
    @property
    def boot(self) -> str: ...
    @property
    def sensor_health(self) -> dict[str, str]: ...
    @property
    def last_readings(self) -> dict[str, dict[str, Any]]: ...


def live_status(station: LiveStation, *, detail: bool = True) -> StationStatus:
    """The status now; without `detail` only what reads no more than memory and the backlog."""
    config, parts = station.config, station.parts
    backlog, oldest = parts.store.backlog()
    next_programme, programme_state = programme_fields(parts)
    status = StationStatus(
        ts=parts.clock.now_ms(),
        version=__version__,
        boot=station.boot,
        area=config.station.area,
        backlog=backlog,
        oldest_unsent_ts=oldest,
        clock_synced=parts.clock.synced(),
        audio=parts.queue.state,
        sensors=dict(sorted(station.sensor_health.items())),
        station=config.station.id,
        source="service",
        database=str(config.storage.path),
        service_running=True,
        pid=os.getpid(),
        broker=f"{config.mqtt.host}:{config.mqtt.port}",
        broker_connected=parts.uplink.connected,
        next_programme=next_programme,
        programme_state=programme_state,
    )
    if detail:
        _add_detail(station, status)
    return status


def programme_fields(parts: Parts) -> tuple[dict[str, Any] | None, str]:
    """`next_programme` of the §3 state, and `programme_state` saying whether items play (§10)."""
    upcoming = parts.programmes.upcoming(1)
    nxt = {k: upcoming[0][k] for k in ("id", "item", "at")} if upcoming else None
    return nxt, "clock_unsynced" if not parts.clock.synced() else "ok"


def _add_detail(station: LiveStation, status: StationStatus) -> None:
    parts = station.parts
    store = parts.store
    recorded = store.status()
    connected_ts = recorded.get("connected_ts")
    status.connected_ts = connected_ts if isinstance(connected_ts, int) else None
    last_publish = recorded.get("last_publish_ts")
    status.last_publish_ts = last_publish if isinstance(last_publish, int) else None
    error = recorded.get("last_error")
    status.last_error = None if status.broker_connected or error is None else str(error)
    status.time_floor_ts = parts.intake.floor.floor_ms
    status.faults = store.faults()
    status.last_readings = sorted(
        station.last_readings.values(), key=lambda r: (str(r["sensor"]), str(r["q"]))
    )
    alerts = [e for e in store.alerts.recent(RECENT * 4) if e.record.kind != "command"]
    status.alerts = [alert_summary(a) for a in alerts[:RECENT]]
    status.receipts = store.recent_receipts(RECENT)
    status.programmes = parts.programmes.upcoming(RECENT)
