"""Command-line face of the centre tool: `cunxiang keygen`, `alert send` and `command send`.

These are plain click commands; gateway/cli/main.py registers them on the main
`cunxiang` group (README command table).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import get_args

import click

from audio.levels import WARNING_LEVELS
from gateway.centre.alerts import (
    DEFAULT_EXPIRES_IN_S,
    DEFAULT_PREFIX,
    AlertSpec,
    CentreError,
    alert_topic,
    build_alert,
    publish_and_collect,
    render_table,
    seal_alert,
)
from gateway.centre.commands import (
    DEFAULT_COMMAND_EXPIRES_IN_S,
    CommandSpec,
    build_command,
    parse_args,
    seal_command,
    send_and_wait,
)
from gateway.cli.options import signer_options
from gateway.downlink.alert_model import MsgType, PayloadError, Status
from gateway.downlink.command_model import CommandName
from gateway.downlink.keys import generate_keypair, load_private_key


@click.command("keygen")
@click.option("--name", required=True, help="Key name, as stations list it in trusted_keys.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for NAME.key (private) and NAME.pub (public).",
)
def keygen(name: str, out_dir: Path) -> None:
    """Make an Ed25519 key pair for an issuing authority."""
    try:
        key_path, pub_path, line = generate_keypair(name, out_dir)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"private key: {key_path} (keep it secret; mode 0600)")
    click.echo(f"public key:  {pub_path}")
    click.echo("add this line to [security] trusted_keys on every station:")
    click.echo(line)


@click.group("alert")
def alert() -> None:
    """The centre's alert tools."""


def _references(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(ref.strip() for value in values for ref in value.split(",") if ref.strip())


@alert.command("send")
@signer_options
@click.option("--area", required=True, help="Area code (2/4/6/9/12 digits) or 'all'.")
@click.option("--level", required=True, type=click.Choice([str(level) for level in WARNING_LEVELS]))
@click.option("--event", required=True, help="Event type, e.g. flood.")
@click.option("--text", default="", help="What the loudspeakers say.")
@click.option(
    "--repeat",
    type=click.IntRange(1, 10),
    default=None,
    help="Times to play (default: the station's default for the level).",
)
@click.option("--tone", type=click.Choice(["siren", "chime", "none"]), default=None)
@click.option("--clip", default=None, help="A clip name on the stations (JSON alerts only).")
@click.option("--cap", "as_cap", is_flag=True, help="Send CAP 1.2 XML instead of JSON.")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to collect receipts.",
)
@click.option("--topic-prefix", default=DEFAULT_PREFIX, show_default=True)
@click.option("--id", "alert_id", default=None, help="Alert id (default: a new one).")
@click.option("--sender", default=None, help="Sender name (default: the key name).")
@click.option("--status", type=click.Choice(get_args(Status)), default="actual", show_default=True)
@click.option(
    "--msg-type", type=click.Choice(get_args(MsgType)), default="alert", show_default=True
)
@click.option("--references", multiple=True, help="Id(s) an update or cancel refers to.")
@click.option(
    "--expires-in",
    type=click.IntRange(min=1),
    default=DEFAULT_EXPIRES_IN_S,
    show_default=True,
    help="Seconds until the alert expires.",
)
@click.option(
    "--station",
    default=None,
    help="Send to this one station only (its topic, and `stations` in the alert).",
)
def send(
    broker: str,
    key_file: Path,
    key_name: str,
    area: str,
    level: str,
    event: str,
    text: str,
    repeat: int | None,
    tone: str | None,
    clip: str | None,
    as_cap: bool,
    wait_s: float,
    topic_prefix: str,
    alert_id: str | None,
    sender: str | None,
    status: str,
    msg_type: str,
    references: tuple[str, ...],
    expires_in: int,
    station: str | None,
) -> None:
    """Build, sign and publish an alert; print who received and played it."""
    if as_cap and (clip, tone, repeat) != (None, None, None):
        raise click.UsageError(
            "--clip, --tone and --repeat have no CAP form; leave them out with --cap"
        )
    spec = AlertSpec(
        area=area,
        level=level,
        event=event,
        text=text,
        sender=sender or key_name,
        repeat=repeat,
        tone=tone,
        clip=clip,
        status=status,
        msg_type=msg_type,
        references=_references(references),
        alert_id=alert_id,
        expires_in_s=expires_in,
        station=station,
    )
    try:
        private_key = load_private_key(key_file)
        built = build_alert(spec, datetime.now().astimezone())
        topic = alert_topic(topic_prefix, area, station)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except PayloadError as exc:
        raise click.ClickException(f"invalid alert: {exc.detail}") from None
    envelope = seal_alert(built, as_cap, key_name, private_key)
    try:
        stations = publish_and_collect(broker, topic, envelope, topic_prefix, built.id, wait_s)
    except CentreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"published {built.id} ({'cap' if as_cap else 'json'}) on {topic}")
    click.echo(render_table(stations))


@click.group("command")
def command() -> None:
    """The centre's station commands (docs/protocol.md §8)."""


@command.command("send")
@signer_options
@click.option("--station", required=True, help="The station id the command is for.")
@click.option("--topic-prefix", default=DEFAULT_PREFIX, show_default=True)
@click.option("--id", "command_id", default=None, help="Command id (default: a new one).")
@click.option(
    "--expires-in",
    type=click.IntRange(min=1),
    default=DEFAULT_COMMAND_EXPIRES_IN_S,
    show_default=True,
    help="Seconds until the command expires (stations refuse more than their "
    "security.max_command_lifetime_s, default 600).",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the response.",
)
@click.argument("cmd", type=click.Choice(get_args(CommandName)))
@click.argument("args", nargs=-1)
def send_command(
    broker: str,
    key_file: Path,
    key_name: str,
    station: str,
    topic_prefix: str,
    command_id: str | None,
    expires_in: int,
    wait_s: float,
    cmd: str,
    args: tuple[str, ...],
) -> None:
    """Sign and send one command (ARGS: name=value ... or one JSON object); print its response."""
    try:
        private_key = load_private_key(key_file)
        spec = CommandSpec(station, cmd, parse_args(args), command_id, expires_in)
        payload = build_command(spec, datetime.now().astimezone())
    except (ValueError, OSError, CentreError) as exc:
        raise click.ClickException(str(exc)) from None
    except PayloadError as exc:
        raise click.ClickException(f"invalid command: {exc.detail}") from None
    sent_id = json.loads(payload)["id"]
    envelope = seal_command(payload, key_name, private_key)
    try:
        response = send_and_wait(broker, topic_prefix, station, envelope, sent_id, wait_s)
    except CentreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"published {cmd} {sent_id} to {station}")
    if response is None:
        raise click.ClickException(f"no response from {station} within {wait_s:g} s")
    click.echo(json.dumps(response, ensure_ascii=False, indent=2))
    if response.get("ok") is not True:
        raise SystemExit(1)
