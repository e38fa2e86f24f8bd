"""`cunxiang demo`: the embedded default station, for a first look and for the README.

It writes the packaged demo config (simulated sensors; a river level that
crosses its alarm line within seconds; a local alarm with a spoken broadcast)
into a folder, and runs the real service on it. It needs no broker — records
wait in the local store — and syncs to one on localhost:1883 when one is there.
The broadcast goes to the sound card when the machine has one; otherwise it is
rendered to `broadcast.wav` in the folder through an ALSA file sink, and the
screen says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import wave
from importlib import resources
from pathlib import Path
from typing import Any

import click

from gateway.config import load_config
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


def prepare(directory: Path) -> tuple[Path, Path | None]:
    """Write the config (and, without a sound card, an ALSA file sink) into the folder."""
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "gateway.toml"
    if not config_file.exists():
        config_file.write_text(demo_config_text(), encoding="utf-8")
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


def _print_record(kind: str, record: dict[str, Any]) -> None:
    if kind == "reading":
        flags = f"  [{', '.join(record['flags'])}]" if record.get("flags") else ""
        value = record["v"]
        shown = f"{value:8.2f}" if isinstance(value, float) else f"{value!s:>8}"
        click.echo(f"  reading  {record['sensor']:<8} {record['q']:<14} {shown}{flags}")
    else:
        fields = ", ".join(f"{k}={v}" for k, v in record.items())
        click.secho(f"  EVENT    {kind}: {fields}", fg="yellow" if kind == "alarm" else None)


async def _run(station: Station, seconds: float | None) -> int:
    task = asyncio.create_task(station.run())
    if seconds is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout=seconds)
        station.stop()
    return await task


def run_demo(directory: Path | None, seconds: float | None = None) -> int:
    """Run the demo station until Ctrl-C (or for `seconds`)."""
    folder = directory or Path(tempfile.mkdtemp(prefix="cunxiang-demo-"))
    config_file, raw = prepare(folder)
    setup_logging("info")
    config = load_config(config_file)
    click.echo(f"Cunxiang demo station {config.station.id} in {folder}")
    click.echo(f"  config:   {config_file}")
    click.echo(f"  database: {config.storage.path}")
    click.echo(
        f"  broker:   {config.mqtt.host}:{config.mqtt.port} "
        "(records wait in the database while there is none)"
    )
    if raw is None:
        click.echo("  sound:    the sound card (the alarm will be heard)")
    else:
        click.echo(
            f"  sound:    no sound card here: broadcasts are rendered to {folder / 'broadcast.wav'}"
        )
    click.echo("The river rises past its 3.0 m alarm line within seconds. Ctrl-C ends the demo.\n")
    station = Station(config)
    station.on_record = _print_record
    try:
        code = asyncio.run(_run(station, seconds))
    except KeyboardInterrupt:
        code = 0
    if raw is not None:
        length = raw_to_wav(raw, folder / "broadcast.wav")
        click.echo(f"\nBroadcast audio: {folder / 'broadcast.wav'} ({length:.1f} s)")
    click.echo(f"Status: cunxiang status -c {config_file}")
    return code
