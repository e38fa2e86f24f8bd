"""The county centre's part of `cunxiang demo`: a demo key, a schedule, an alert, what to paste.

The demo station trusts a centre key kept in its own folder (`demo-centre.key`, made on
the first run). With a broker there, this module plays the centre as a real one would,
through the broker: it publishes a signed programme schedule (retained) whose item plays
a few seconds in, and once that item is on the loudspeakers a signed town-wide alert
that preempts it. It also writes `programme.json`, an example schedule, and gives the
exact `cunxiang alert send` and `cunxiang programme send` lines a newcomer can paste
into another terminal to send their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.centre.alerts import (
    AlertSpec,
    CentreError,
    alert_topic,
    build_alert,
    publish_and_collect,
    seal_alert,
)
from gateway.centre.programme import (
    build_schedule,
    programme_topic,
    publish_retained,
    seal_schedule,
)
from gateway.downlink.keys import generate_keypair, load_private_key, public_key_b64

KEY_NAME = "demo-centre"
ZONE = ZoneInfo("Asia/Shanghai")
SCHEDULE_ID = "demo-day"
ITEM = "morning-notice"
ITEM_TEXT = "各位村民，汛期已到，请不要在河边游泳。"
ALERT_TEXT = "黄色预警：今晚有暴雨，请大家注意防范。"
#: How far ahead of publishing the demo's programme item is due.
ITEM_LEAD_S = 1
#: How long the item plays before the alert comes.
ALERT_AFTER_S = 1.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class DemoCentre:
    """The demo's centre key and where the demo station's town is."""

    key_file: Path
    key: Ed25519PrivateKey
    broker: str
    prefix: str
    town: str

    @property
    def public_b64(self) -> str:
        return public_key_b64(self.key)


def centre_key(folder: Path) -> tuple[Path, Ed25519PrivateKey]:
    """The demo centre's key in `folder`, made on the first run."""
    key_file = folder / f"{KEY_NAME}.key"
    if not key_file.exists():
        generate_keypair(KEY_NAME, folder)
    return key_file, load_private_key(key_file)


def example_schedule(folder: Path, now: dt.datetime) -> Path:
    """`programme.json`: a schedule a newcomer can edit and send (an item a minute ahead)."""
    path = folder / "programme.json"
    at = (now.astimezone(ZONE) + dt.timedelta(minutes=1)).strftime("%H:%M")
    body = {
        "id": "my-first-schedule",
        "timezone": "Asia/Shanghai",
        "quiet_hours": {"from": "21:30", "to": "06:30"},
        "items": [
            {"name": "safety-talk", "at": at, "days": "daily", "text": "请大家注意用电用火安全。"}
        ],
    }
    path.write_text(json.dumps(body, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def paste_lines(centre: DemoCentre, schedule_file: Path) -> list[str]:
    """The exact commands to send one's own alert and schedule to the demo station."""
    common = (
        f"--broker {centre.broker} --key {shlex.quote(str(centre.key_file))} "
        f"--key-name {KEY_NAME} --area {centre.town}"
    )
    return [
        f"cunxiang alert send {common} --level yellow --event rainstorm "
        f"--text {shlex.quote('今晚有暴雨，请注意防范。')}",
        f"cunxiang programme send {common} --file {shlex.quote(str(schedule_file))}",
    ]


async def play_the_centre(
    centre: DemoCentre,
    connected: Callable[[], bool],
    item_started: asyncio.Event,
    published: asyncio.Event,
    say: Say,
) -> None:
    """Publish the schedule, then the alert once the item has started (or was skipped)."""
    deadline = time.monotonic() + 5
    while not connected():
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)
    now = dt.datetime.now(ZONE)
    due = now.replace(microsecond=0) + dt.timedelta(seconds=ITEM_LEAD_S + 1)
    fields = {
        "id": SCHEDULE_ID,
        "timezone": "Asia/Shanghai",
        "valid_from": due.date().isoformat(),  # today only: a demo, not a daily programme
        "valid_until": due.date().isoformat(),
        "items": [{"name": ITEM, "at": f"{due:%H:%M:%S}", "text": ITEM_TEXT, "tone": "chime"}],
    }
    payload = build_schedule(fields, centre.town, now)
    topic = programme_topic(centre.prefix, centre.town)
    envelope = seal_schedule(payload, KEY_NAME, centre.key)
    say(
        f"  CENTRE   publishes programme schedule {SCHEDULE_ID} (retained) on {topic}: "
        f"item {ITEM} at {due:%H:%M:%S}"
    )
    try:
        await asyncio.to_thread(
            publish_retained, centre.broker, topic, envelope, centre.prefix, SCHEDULE_ID, 0.0
        )
    except CentreError as exc:
        say(f"  CENTRE   cannot publish: {exc}")
        return
    published.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(item_started.wait(), timeout=ITEM_LEAD_S + 10)
    await asyncio.sleep(ALERT_AFTER_S)
    await send_alert(centre, say)


async def send_alert(centre: DemoCentre, say: Say) -> None:
    spec = AlertSpec(
        area=centre.town,
        level="yellow",
        event="rainstorm",
        text=ALERT_TEXT,
        sender="演示县应急管理局 (demo)",
        repeat=1,
        tone="chime",
        expires_in_s=1800,
    )
    alert = build_alert(spec, dt.datetime.now().astimezone())
    topic = alert_topic(centre.prefix, centre.town)
    envelope = seal_alert(alert, False, KEY_NAME, centre.key)
    say(f"  CENTRE   publishes town-wide yellow alert {alert.id} on {topic}")
    try:
        await asyncio.to_thread(
            publish_and_collect, centre.broker, topic, envelope, centre.prefix, alert.id, 0.0
        )
    except CentreError as exc:
        say(f"  CENTRE   cannot publish the alert: {exc}")


def withdraw_retained(centre: DemoCentre) -> None:
    """Leave no demo schedule retained on the broker for the next station that connects."""
    topic = programme_topic(centre.prefix, centre.town)
    with contextlib.suppress(CentreError):
        publish_retained(centre.broker, topic, b"", centre.prefix, SCHEDULE_ID, 0.0)
