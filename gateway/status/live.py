"""The station's status as the running service knows it now.

Why this module exists: the database's copy of the status is saved every few seconds, so right
after a restart — when a technician looks most — it says "not connected" while the service is
already draining. This builds the same `StationStatus` (gateway/status/model.py) from the service's
memory instead: the uplink's connection, the store's backlog and recorded uplink fields, the
sensors' health and last values, the clock, the audio queue, recent alerts and receipts and the
next programme items. With ``detail=False`` it builds only the docs/protocol.md §3 fields, which
the uplink publishes (`Station.state_fields`); the status socket (gateway/status/server.py)
asks for everything.

Everything runs on the event loop and must stay within a few milliseconds: it reads memory, and
SQLite only through the store's reader connection (a WAL reader never waits for the writer).
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from gateway import __version__
from gateway.config import Config
from gateway.status.model import StationStatus, alert_summary
from gateway.store.outbox import Store

#: How many alerts and receipts a live answer lists.
RECENT = 10


class _Uplink(Protocol):
    @property
    def connected(self) -> bool: ...


class _Queue(Protocol):
    @property
    def state(self) -> str: ...


class _Clock(Protocol):
    def now_ms(self) -> int: ...
    def synced(self) -> bool: ...


class LiveStation(Protocol):
    """What the builder reads from the running service (gateway/service.py `Station`)."""

    @property
    def config(self) -> Config: ...
    @property
    def store(self) -> Store: ...
    @property
    def uplink(self) -> _Uplink: ...
    @property
    def queue(self) -> _Queue: ...
    @property
    def clock(self) -> _Clock: ...
    @property
    def boot(self) -> str: ...
    @property
    def sensor_health(self) -> dict[str, str]: ...
    @property
    def last_readings(self) -> dict[str, dict[str, Any]]: ...

    def time_floor_ts(self) -> int | None: ...
    def next_programmes(self, count: int = 5) -> list[dict[str, Any]]: ...
    def programme_state(self) -> dict[str, Any]: ...


def live_status(station: LiveStation, *, detail: bool = True) -> StationStatus:
    """The status now; without `detail` only the §3 fields are filled in (cheaply)."""
    config = station.config
    backlog, oldest = station.store.backlog()
    status = StationStatus(
        ts=station.clock.now_ms(),
        version=__version__,
        boot=station.boot,
        area=config.station.area,
        backlog=backlog,
        oldest_unsent_ts=oldest,
        clock_synced=station.clock.synced(),
        audio=station.queue.state,
        sensors=dict(sorted(station.sensor_health.items())),
        station=config.station.id,
        source="service",
        database=str(config.storage.path),
        service_running=True,
    )
    programme = station.programme_state()
    status.next_programme = programme["next_programme"]
    status.programme_state = programme["programme_state"]
    if detail:
        _add_detail(station, status)
    return status


def _add_detail(station: LiveStation, status: StationStatus) -> None:
    store = station.store
    recorded = store.status()
    status.pid = os.getpid()
    status.broker = f"{station.config.mqtt.host}:{station.config.mqtt.port}"
    status.broker_connected = station.uplink.connected
    connected_ts = recorded.get("connected_ts")
    status.connected_ts = connected_ts if isinstance(connected_ts, int) else None
    last_publish = recorded.get("last_publish_ts")
    status.last_publish_ts = last_publish if isinstance(last_publish, int) else None
    error = recorded.get("last_error")
    status.last_error = None if status.broker_connected or error is None else str(error)
    status.time_floor_ts = station.time_floor_ts()
    status.faults = store.faults()
    status.last_readings = sorted(
        station.last_readings.values(), key=lambda r: (str(r["sensor"]), str(r["q"]))
    )
    alerts = [a for a in store.recent_alerts(RECENT * 4) if a.get("kind") != "command"]
    status.alerts = [alert_summary(a) for a in alerts[:RECENT]]
    status.receipts = store.recent_receipts(RECENT)
    status.programmes = station.next_programmes(RECENT)
