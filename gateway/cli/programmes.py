"""`cunxiang programme send` (the centre) and `cunxiang programmes` (the technician).

`programmes -c FILE` reads the schedules kept in the station database (read-only, so it
works while the service runs) and the config file's own `[[programmes]]` items, and lists
what is in force and the next items to play. gateway/cli/main.py registers both commands.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from pathlib import Path

import click

from gateway.centre.alerts import DEFAULT_PREFIX, CentreError
from gateway.centre.programme import (
    build_schedule,
    programme_topic,
    publish_retained,
    read_schedule_file,
    render_receipts,
    seal_schedule,
    withdrawal,
)
from gateway.cli.options import config_option, load_or_exit, signer_options
from gateway.clock import StationClock
from gateway.downlink.keys import load_private_key
from gateway.programmes.book import ProgrammeBook
from gateway.programmes.model import ItemBase, QuietHours
from gateway.programmes.timetable import LOCAL_KEY, local_slots, upcoming


@click.group("programme")
def programme() -> None:
    """The centre's programme tools."""


@programme.command("send")
@signer_options
@click.option("--area", required=True, help="Area code (2/4/6/9/12 digits) or 'all'.")
@click.option(
    "--file",
    "schedule_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The schedule as JSON (docs/protocol.md §10).",
)
@click.option("--withdraw", "withdraw_id", default=None, help="Withdraw the schedule with this id.")
@click.option("--station", default=None, help="Send to this one station only.")
@click.option("--topic-prefix", default=DEFAULT_PREFIX, show_default=True)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds to collect receipts.",
)
def send(
    broker: str,
    key_file: Path,
    key_name: str,
    area: str,
    schedule_file: Path | None,
    withdraw_id: str | None,
    station: str | None,
    topic_prefix: str,
    wait_s: float,
) -> None:
    """Sign a schedule and publish it retained; print what the stations answered."""
    if (schedule_file is None) == (withdraw_id is None):
        raise click.UsageError("give exactly one of --file SCHEDULE.json or --withdraw ID")
    try:
        fields = withdrawal(withdraw_id) if withdraw_id else read_schedule_file(schedule_file)  # type: ignore[arg-type]
        payload = build_schedule(fields, area, dt.datetime.now().astimezone())
        topic = programme_topic(topic_prefix, area, station)
        private_key = load_private_key(key_file)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    envelope = seal_schedule(payload, key_name, private_key)
    schedule_id = str(fields["id"])
    try:
        stations = publish_retained(broker, topic, envelope, topic_prefix, schedule_id, wait_s)
    except CentreError as exc:
        raise click.ClickException(str(exc)) from None
    what = "withdrawal of" if withdraw_id else "schedule"
    click.echo(f"published {what} {schedule_id} (retained) on {topic}")
    click.echo(render_receipts(stations))


class _KeptSchedules:
    """The `programmes` table read from a database opened read-only."""

    def __init__(self, path: Path) -> None:
        self.rows: list[tuple[str, str, int, str]] = []
        if not path.exists():
            return
        with (
            contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db,
            contextlib.suppress(sqlite3.OperationalError),  # a database from before programmes
        ):
            self.rows = db.execute(
                "SELECT key, id, version, payload FROM programmes ORDER BY received_ts, rowid"
            ).fetchall()

    def programmes(self) -> list[tuple[str, str, int, str]]:
        return self.rows

    def save_programme(self, key: str, schedule_id: str, version: int, payload: str) -> None:
        raise NotImplementedError("read-only")


def _days(item: ItemBase) -> str:
    return item.days if isinstance(item.days, str) else ",".join(item.days)


def _what(item: ItemBase) -> str:
    if item.clip:
        return f"clip {item.clip}"
    if item.text:
        return f"text {item.text[:40]!r}"
    return "inline audio" if item.inline_audio() is not None else f"tone {item.tone}"


def _quiet(quiet: QuietHours | None) -> str:
    return f", quiet {quiet.start:%H:%M}-{quiet.end:%H:%M}" if quiet else ""


@click.command("programmes")
@config_option
@click.option("--next", "count", type=click.IntRange(1, 100), default=10, show_default=True)
def programmes(config_path: Path, count: int) -> None:
    """List the programme schedules in force and the next items to play."""
    config = load_or_exit(config_path)
    try:
        book = ProgrammeBook(_KeptSchedules(config.storage.path))
    except sqlite3.Error as exc:
        click.echo(
            f"{config_path}: storage.path: cannot read {config.storage.path}: {exc}", err=True
        )
        raise SystemExit(2) from None
    in_force = book.in_force()
    click.echo("Schedules in force:")
    for key, schedule in in_force:
        valid = f"{schedule.valid_from or '…'} to {schedule.valid_until or '…'}"
        click.echo(
            f"  {schedule.id} v{schedule.version} (key {key}), {schedule.timezone}, "
            f"valid {valid}{_quiet(schedule.quiet_hours)}"
        )
        for item in schedule.items:
            click.echo(f"    {item.name:20} {item.at:%H:%M:%S} {_days(item):28} {_what(item)}")
    if config.programmes:
        click.echo(f"  {LOCAL_KEY} (the config file's [[programmes]])")
        for local in config.programmes:
            click.echo(f"    {local.name:20} {local.at:%H:%M:%S} {_days(local):28} {_what(local)}")
    if not in_force and not config.programmes:
        click.echo("  (none)")
    slots = book.slots() + local_slots(config.programmes)
    now = dt.datetime.now().astimezone()
    click.echo("Next items:")
    for occ in upcoming(slots, int(now.timestamp() * 1000), count):
        at = dt.datetime.fromtimestamp(occ.at_ms / 1000, occ.slot.zone)
        click.echo(f"  {at:%Y-%m-%d %H:%M:%S %Z}  {occ.slot.schedule_id}/{occ.slot.item.name}")
    if not slots:
        click.echo("  (none)")
    if not StationClock(config.station.clock).synced():
        click.echo("The clock is NOT synced: no routine item plays until it is (each is skipped).")
