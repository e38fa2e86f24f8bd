"""Building, signing and publishing programme schedules as the centre does, for the tests."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from zoneinfo import ZoneInfo

from harness.station import AREA, topic
from tests.e2e.conftest import Rig

ZONE = ZoneInfo("Asia/Shanghai")
TOWN_PROGRAMME_TOPIC = topic("programme", AREA[:9])


def local_in(seconds: float) -> dt.datetime:
    """The local time (Asia/Shanghai) `seconds` from now, to the second (rounded up)."""
    moment = dt.datetime.now(ZONE) + dt.timedelta(seconds=seconds)
    return moment.replace(microsecond=0) + dt.timedelta(seconds=1)


def at_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def item_id(schedule_id: str, name: str, moment: dt.datetime) -> str:
    return f"prog:{schedule_id}:{name}:{moment.date().isoformat()}"


def schedule(
    schedule_id: str, version: int, items: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    """A §10 schedule for the station's town."""
    body: dict[str, Any] = {
        "id": schedule_id,
        "version": version,
        "sent": dt.datetime.now(ZONE).isoformat(timespec="seconds"),
        "areas": [AREA[:9]],
        "timezone": "Asia/Shanghai",
        "items": items,
    }
    body.update(fields)
    return body


def item(name: str, moment: dt.datetime, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "at": moment.strftime("%H:%M:%S"), "days": "daily"}
    body.update(fields)
    return body


def publish_schedule(rig: Rig, body: dict[str, Any], topic_: str = TOWN_PROGRAMME_TOPIC) -> None:
    """Sign as `programme` and publish retained at QoS 1, as `cunxiang programme send` does."""
    raw = rig.sealed_fields(body, "programme")
    info = rig.sub.client.publish(topic_, raw, qos=1, retain=True)
    info.wait_for_publish(5)


def wait_s(seconds: float) -> None:
    time.sleep(max(0.0, seconds))
