"""Which envelope type belongs on which downlink topic (docs/protocol.md §2, §6)."""

from __future__ import annotations

import pytest

from gateway.downlink.router import DownlinkTopics, Route, programme_topics
from tests.alerts.samples import STATION_AREA

PREFIX = "cx/v1/"
STATION = "s-01"
TOPICS = DownlinkTopics(
    station_alert=f"{PREFIX}station/{STATION}/alert",
    station_cmd=f"{PREFIX}station/{STATION}/cmd",
    area_prefix=f"{PREFIX}alert/",
    programmes=programme_topics(PREFIX, STATION, STATION_AREA),
)


def test_programme_topics_are_all_the_area_path_and_the_station() -> None:
    assert programme_topics(PREFIX, STATION, STATION_AREA) == {
        f"{PREFIX}programme/{code}"
        for code in ("all", "37", "3715", "371581", "371581001", "371581001201")
    } | {f"{PREFIX}station/{STATION}/programme"}


@pytest.mark.parametrize(
    ("type_", "topic", "route"),
    [
        ("command", f"{PREFIX}station/{STATION}/cmd", "command"),
        ("alert", f"{PREFIX}station/{STATION}/alert", "alert"),
        ("cap", f"{PREFIX}alert/371581001", "alert"),
        ("programme", f"{PREFIX}programme/3715", "programme"),
        ("programme", f"{PREFIX}station/{STATION}/programme", "programme"),
        ("command", f"{PREFIX}alert/371581001", None),
        ("alert", f"{PREFIX}station/{STATION}/cmd", None),
        ("programme", f"{PREFIX}alert/all", None),
        ("cap", f"{PREFIX}programme/all", None),
        ("command", f"{PREFIX}station/other/cmd", None),
    ],
)
def test_a_type_is_routed_only_on_its_own_topics(
    type_: str, topic: str, route: Route | None
) -> None:
    assert TOPICS.route(type_, topic) == route
