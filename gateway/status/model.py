"""What `cunxiang status` shows, as one record, whoever builds it.

Why this module exists: the station's state is reported in three places — the retained state
message the uplink publishes (docs/protocol.md §3), the live answer the running service gives
on its status socket, and the database's view when the service is down. All three are built as
one `StationStatus` and projected from it here, so a field means the same everywhere:

* `protocol_state` — the §3 fields (without ``online``, which the uplink sets), published by
  gateway/uplink/supervisor.py and used by the §8 ``status`` command;
* `status_json` — what ``cunxiang status --json`` prints and the status socket sends: the §3
  fields plus ``last_readings``, ``alerts``, ``receipts``, ``programmes`` and the technician's
  details; `status_from_json` reads it back (the command line renders a live answer with the
  same code as a database view);
* `recorded_status` — what the running service records in the database every tick (when it
  changes), for the database's view when the service does not answer.

The builders are gateway/status/live.py (from the running service's memory) and
gateway/status/database.py (from the database file); the text report is gateway/status/render.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.downlink.alert_ids import public_id
from gateway.store.alert_records import LogEntry

Source = Literal["service", "database"]

#: The §3 state fields, in the order of docs/protocol.md (``online`` is the uplink's).
PROTOCOL_FIELDS = (
    "ts",
    "version",
    "boot",
    "area",
    "backlog",
    "oldest_unsent_ts",
    "clock_synced",
    "audio",
    "sensors",
    "next_programme",
    "programme_state",
)
#: The fields the running service records for the database's view (with ``running``), in the
#: order they are saved; the uplink records its own (``connected_ts``, ``last_error``...).
RECORDED_FIELDS = (
    "pid",
    "boot",
    "broker_connected",
    "audio",
    "clock_synced",
    "sensors",
    "next_programme",
    "programme_state",
)
#: What the alert log's entries are cut down to in a status answer.
ALERT_FIELDS = ("id", "key", "state", "level", "event", "received_ts", "updated_ts")


@dataclass
class StationStatus:
    """Everything `cunxiang status` reports; field names are the keys of `status_json`."""

    # docs/protocol.md §3
    ts: int
    version: str | None
    boot: str | None
    area: str
    backlog: int
    oldest_unsent_ts: int | None
    clock_synced: bool | None
    audio: str | None
    sensors: dict[str, str]
    # who answers, and for whom
    station: str | None
    source: Source
    database: str
    service_running: bool
    pid: int | None = None
    #: When the service last recorded its status in the database (database view only).
    recorded_ts: int | None = None
    # the uplink
    broker: str | None = None
    broker_connected: bool = False
    connected_ts: int | None = None
    last_publish_ts: int | None = None
    last_error: str | None = None
    # the clock's time floor (docs/protocol.md §6.1), epoch ms, when the station keeps one
    time_floor_ts: int | None = None
    # details
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_readings: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    programmes: list[dict[str, Any]] = field(default_factory=list)
    # docs/protocol.md §10: the next routine item, and whether routine items play at all
    next_programme: dict[str, Any] | None = None
    programme_state: str | None = None

    @property
    def online(self) -> bool:
        """§3 ``online``: the service runs and its broker connection is up."""
        return self.service_running and self.broker_connected


def protocol_state(status: StationStatus) -> dict[str, Any]:
    """The docs/protocol.md §3 state object without ``online`` (the uplink sets it)."""
    return {name: getattr(status, name) for name in PROTOCOL_FIELDS}


def recorded_status(status: StationStatus) -> dict[str, Any]:
    """What the running service records for `cunxiang status` when it cannot answer (read back
    by gateway/status/database.py): ``running`` and `RECORDED_FIELDS`."""
    return {"running": status.service_running} | {
        name: getattr(status, name) for name in RECORDED_FIELDS
    }


def status_json(status: StationStatus) -> dict[str, Any]:
    """``cunxiang status --json``: ``online`` and the §3 fields first, then everything else."""
    doc: dict[str, Any] = {"online": status.online}
    # Not dataclasses.asdict: its deep copy was most of a live answer's time. The builders make
    # fresh containers for every answer, so the document shares nothing that changes later.
    doc.update((f.name, getattr(status, f.name)) for f in dataclasses.fields(status))
    return doc


def status_from_json(doc: dict[str, Any]) -> StationStatus:
    """Read back a `status_json` document (from the status socket); ValueError if it is not one.

    Fields the sender did not know (an older service still running after an upgrade) keep
    their defaults; fields this release does not know are ignored.
    """
    known = {f.name: f for f in dataclasses.fields(StationStatus)}
    values = {name: doc[name] for name in known if name in doc}
    missing = [
        name
        for name, f in known.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"not a status answer: no {', '.join(missing)}")
    return StationStatus(**values)


def alert_summary(entry: LogEntry) -> dict[str, Any]:
    """An alert-log entry as a status answer shows it (`ALERT_FIELDS`): the id its receipts
    carry, the signing key, the event from the alert's body (or a local alarm's rule)."""
    record = entry.record
    return {
        "id": public_id(entry.id),
        "key": record.key,
        "state": entry.state,
        "level": record.level,
        "event": record.alert.get("event") if record.alert is not None else record.rule,
        "received_ts": entry.received_ts,
        "updated_ts": entry.updated_ts,
    }


def sensor_states(
    configured: dict[str, str], last_readings: list[dict[str, Any]], faults: dict[str, Any]
) -> dict[str, str]:
    """Sensor name → ``ok`` or ``fault``: what the service said, else the latest fault events."""
    states = {str(r["sensor"]): "ok" for r in last_readings if "sensor" in r}
    for sensor, fault in faults.items():
        states[sensor] = (
            "fault" if isinstance(fault, dict) and fault.get("state") == "fault" else "ok"
        )
    states.update(configured)
    return dict(sorted(states.items()))
