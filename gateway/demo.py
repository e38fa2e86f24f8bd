"""`cunxiang demo`: a short day in the village, for a first look and for the README.

It writes the packaged demo config (simulated sensors; a river level that
crosses its alarm line within seconds; a local alarm with a spoken broadcast)
into a folder, with a demo centre key that the station trusts (gateway/centre/demo.py),
and runs the real service on it. With a broker on localhost:1883 (or `--broker`)
the demo also plays the county centre through that broker: a signed programme
schedule whose item plays a few seconds in, then a signed town-wide alert that
preempts it. Without one it says what it would have shown; records wait in the
local store and the local alarm plays all the same. The broadcast goes to the
sound card when the machine has one; otherwise it is rendered to `broadcast.wav`
in the folder through an ALSA file sink, and the screen says so.

The screen shows each reading, event and receipt once; the service's own log
goes to `station.log` in the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import tempfile
import wave
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import click

from gateway.centre.alerts import parse_broker
from gateway.centre.demo import (
    ITEM,
    KEY_NAME,
    SCHEDULE_ID,
    DemoCentre,
    centre_key,
    example_schedule,
    paste_lines,
    play_the_centre,
    withdraw_retained,
)
from gateway.config.loader import load_config
from gateway.config.model import Config
from gateway.downlink.keys import public_key_b64
from gateway.logs import setup_logging
from gateway.service import Station

log = logging.getLogger(__name__)

RATE = 22050
ASOUNDRC = """pcm.null {{ type null }}
pcm.!default {{ type file slave.pcm "null" file "{raw}" format "raw" }}
ctl.!default {{ type hw card 0 }}
"""


def demo_config_text() -> str:
    """The demo station's config, as packaged in gateway/data/demo.toml."""
    return resources.files("gateway").joinpath("data/demo.toml").read_text(encoding="utf-8")


def has_sound_card() -> bool:
    """True when ALSA lists a playback card (/proc/asound/cards is empty without one)."""
    try:
        cards = Path("/proc/asound/cards").read_text(encoding="utf-8")
    except OSError:
        return False
    return "no soundcards" not in cards and bool(cards.strip())


def demo_config(public_b64: str) -> str:
    """The packaged config with a station id of its own and the demo centre's key trusted.

    Each demo folder is its own station (`demo-…-<4 hex>`), so two demos on one broker
    do not take each other's MQTT session. Its clock counts as synced: on a machine whose
    NTP state the kernel does not report, the programme item would otherwise be skipped.
    """
    text = demo_config_text()
    base = 'id = "demo-371581001201"'
    text = text.replace(base, f'id = "demo-371581001201-{secrets.token_hex(2)}"', 1)
    # A programme needs a true clock (docs/protocol.md §10); the demo trusts this computer's.
    text = text.replace('clock = "auto"', 'clock = "synced"', 1)
    return text + f'\n[security]\ntrusted_keys = {{ "{KEY_NAME}" = "{public_b64}" }}\n'


def prepare(directory: Path) -> tuple[Path, Path | None]:
    """Write the config (and, without a sound card, an ALSA file sink) into the folder."""
    directory.mkdir(parents=True, exist_ok=True)
    _, key = centre_key(directory)
    config_file = directory / "gateway.toml"
    if not config_file.exists():
        config_file.write_text(demo_config(public_key_b64(key)), encoding="utf-8")
    if has_sound_card():
        return config_file, None
    raw = directory / "broadcast.raw"
    raw.unlink(missing_ok=True)
    asoundrc = directory / "asound.conf"
    asoundrc.write_text(ASOUNDRC.format(raw=raw), encoding="utf-8")
    os.environ["ALSA_CONFIG_PATH"] = str(asoundrc)
    return config_file, raw


def raw_to_wav(raw: Path, wav: Path) -> float:
    """Wrap the captured 16-bit mono PCM in a WAV header; returns its length in seconds."""
    data = raw.read_bytes() if raw.exists() else b""
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(data)
    return len(data) / (2 * RATE)


class Screen:
    """What the demo prints: each reading, event and receipt once, as it happens."""

    def __init__(self) -> None:
        self.item_started = asyncio.Event()  # the centre's item played or was skipped
        self.published = asyncio.Event()

    def record(self, kind: str, record: dict[str, Any]) -> None:
        if kind == "reading":
            flags = f"  [{', '.join(record['flags'])}]" if record.get("flags") else ""
            value = record["v"]
            shown = f"{value:8.2f}" if isinstance(value, float) else f"{value!s:>8}"
            click.echo(f"  reading  {record['sensor']:<8} {record['q']:<14} {shown}{flags}")
        elif kind == "receipt":
            alert, status = record["alert"], record["status"]
            extra = ", ".join(f"{k}={v}" for k, v in record.items() if k not in ("alert", "status"))
            click.secho(
                f"  RECEIPT  {alert} {status}" + (f" ({extra})" if extra else ""), fg="cyan"
            )
            if str(alert).startswith(f"prog:{SCHEDULE_ID}:{ITEM}:") and status != "queued":
                self.item_started.set()
        else:
            fields = ", ".join(f"{k}={v}" for k, v in record.items())
            click.secho(f"  EVENT    {kind}: {fields}", fg="yellow" if kind == "alarm" else None)

    @staticmethod
    def say(line: str) -> None:
        click.secho(line, fg="magenta")


async def _run(
    station: Station, screen: Screen, centre: DemoCentre, seconds: float | None
) -> tuple[int, bool]:
    task = asyncio.create_task(station.run())

    def connected() -> bool:
        return station.built and station.parts.uplink.connected

    centre_task = asyncio.create_task(
        play_the_centre(centre, connected, screen.item_started, screen.published, screen.say)
    )
    if seconds is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout=seconds)
        station.stop()
    try:
        code = await task
    finally:
        centre_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await centre_task
    return code, screen.published.is_set()


def _with_broker(config: Config, broker: str | None) -> Config:
    if broker is None:
        return config
    host, port = parse_broker(broker)
    return config.model_copy(
        update={"mqtt": config.mqtt.model_copy(update={"host": host, "port": port})}
    )


NO_BROKER = (
    "\nNo broker answered at {broker}, so the county centre's part was not shown: with one\n"
    "(`apt install mosquitto`, or `--broker HOST:PORT`) the demo publishes a signed programme\n"
    "schedule whose item plays a few seconds in, then a signed town-wide alert that preempts it.\n"
    "The local river alarm played all the same."
)


def run_demo(
    directory: Path | None, seconds: float | None = None, broker: str | None = None
) -> int:
    """Run the demo station until Ctrl-C (or for `seconds`)."""
    folder = directory or Path(tempfile.mkdtemp(prefix="cunxiang-demo-"))
    config_file, raw = prepare(folder)
    log_file = (folder / "station.log").open("a", encoding="utf-8")
    setup_logging("info", stream=log_file)
    config = _with_broker(load_config(config_file), broker)
    broker_at = f"{config.mqtt.host}:{config.mqtt.port}"
    key_file, key = centre_key(folder)
    centre = DemoCentre(key_file, key, broker_at, config.mqtt.topic_prefix, config.station.area[:9])
    schedule_file = example_schedule(folder, datetime.now().astimezone())
    click.echo(f"Cunxiang demo station {config.station.id} in {folder}")
    click.echo(f"  config:   {config_file}")
    click.echo(f"  database: {config.storage.path}")
    click.echo(f"  log:      {folder / 'station.log'}")
    click.echo(f"  centre:   key {key_file} (trusted by the station as {KEY_NAME!r})")
    click.echo(f"  broker:   {broker_at} (records wait in the database while there is none)")
    if raw is None:
        click.echo("  sound:    the sound card (the alarm will be heard)")
    else:
        click.echo(
            f"  sound:    no sound card here: broadcasts are rendered to {folder / 'broadcast.wav'}"
        )
    click.echo(
        "A day in the village: the centre's programme item, then its town-wide alert, and the\n"
        "river rising past its 3.0 m alarm line. To send your own from another terminal:"
    )
    for line in paste_lines(centre, schedule_file):
        click.echo(f"  {line}")
    click.echo("Ctrl-C ends the demo.\n")
    screen = Screen()
    station = Station(config)
    station.on_record = screen.record
    broker_shown = False
    try:
        code, broker_shown = asyncio.run(_run(station, screen, centre, seconds))
    except KeyboardInterrupt:
        code = 0
    finally:
        log_file.close()
    if broker_shown:
        withdraw_retained(centre)
    else:
        click.echo(NO_BROKER.format(broker=broker_at))
    if raw is not None:
        length = raw_to_wav(raw, folder / "broadcast.wav")
        click.echo(f"\nBroadcast audio: {folder / 'broadcast.wav'} ({length:.1f} s)")
    click.echo(f"Status: cunxiang status -c {config_file}")
    return code
