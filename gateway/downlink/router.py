"""Which handler a verified downlink message goes to: its envelope type on its topic.

Why this module exists: a valid signature does not make a message welcome on any topic
(docs/protocol.md §2, §6). A command belongs on the station's own command topic, an alert
or CAP document on the station's alert topic or an area alert topic, a schedule on a
programme topic; any other pairing — a command relabelled for an alert topic, a programme
anywhere but a programme topic — is a `bad_envelope`. The pairing is decided here, once,
from the topics the station's config implies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.config.model import Config
from gateway.downlink.alert_model import ALL_AREAS, area_path

Route = Literal["alert", "command", "programme"]


def programme_topics(prefix: str, station_id: str, area: str) -> frozenset[str]:
    """The retained topics schedules come on (docs/protocol.md §2); `prefix` ends with /."""
    codes = (ALL_AREAS, *area_path(area))
    return frozenset(
        {
            *(f"{prefix}programme/{code}" for code in codes),
            f"{prefix}station/{station_id}/programme",
        }
    )


@dataclass(frozen=True)
class DownlinkTopics:
    """The downlink topics of one station, and which envelope type each may carry."""

    station_alert: str
    station_cmd: str
    area_prefix: str
    programmes: frozenset[str]

    @classmethod
    def of(cls, config: Config) -> DownlinkTopics:
        prefix = f"{config.mqtt.topic_prefix}/"
        station = f"{prefix}station/{config.station.id}"
        return cls(
            station_alert=f"{station}/alert",
            station_cmd=f"{station}/cmd",
            area_prefix=f"{prefix}alert/",
            programmes=programme_topics(prefix, config.station.id, config.station.area),
        )

    def route(self, envelope_type: str, topic: str) -> Route | None:
        """The handler for an envelope of `envelope_type` on `topic`; None if it does not belong."""
        if envelope_type == "command" and topic == self.station_cmd:
            return "command"
        if envelope_type in ("alert", "cap") and (
            topic == self.station_alert or topic.startswith(self.area_prefix)
        ):
            return "alert"
        if envelope_type == "programme" and topic in self.programmes:
            return "programme"
        return None
