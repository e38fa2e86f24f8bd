"""The MQTT topics of one station.

Why this module exists: the topic names are part of the contract with the centre
(docs/protocol.md §1–§2); they are spelt here once, and whatever publishes or subscribes
takes them from a `Topics`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.downlink.alert_model import ALL_AREAS, area_path


@dataclass(frozen=True)
class Topics:
    """The topics of one station (docs/protocol.md §2)."""

    #: Published by the station.
    state: str
    telemetry: str
    event: str
    receipt: str
    cmd_res: str
    #: Subscribed to: the station's own downlink topics...
    alert: str
    cmd: str
    programme: str
    #: ...and those of ``all`` and of each code of its area path (docs/protocol.md §1).
    area_alerts: tuple[str, ...]
    area_programmes: tuple[str, ...]

    @property
    def downlink(self) -> tuple[str, ...]:
        """Every topic the station subscribes to, in the order it subscribes."""
        return (*self.area_alerts, self.alert, self.cmd, *self.area_programmes, self.programme)


def topics_for(prefix: str, station_id: str, area: str) -> Topics:
    """All topics of station `station_id` in area `area` under `prefix`."""
    base = f"{prefix}/station/{station_id}"
    codes = (ALL_AREAS, *area_path(area))
    return Topics(
        state=f"{base}/state",
        telemetry=f"{base}/telemetry",
        event=f"{base}/event",
        receipt=f"{base}/receipt",
        cmd_res=f"{base}/cmd/res",
        alert=f"{base}/alert",
        cmd=f"{base}/cmd",
        programme=f"{base}/programme",
        area_alerts=tuple(f"{prefix}/alert/{code}" for code in codes),
        area_programmes=tuple(f"{prefix}/programme/{code}" for code in codes),
    )
