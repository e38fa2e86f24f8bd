"""The `cunxiang status` command: the station's state, live from the service or from its database.

A thin click layer: it asks the running service on its status socket
(gateway/status/server.py) and, when no service answers, reads the database
(gateway/status/database.py), saying which of the two it shows. ``--watch`` repeats this, in place
on a terminal. gateway/cli/main.py registers it with ``main.add_command(status)``.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from gateway.cli.options import config_option, load_or_exit
from gateway.config.model import Config
from gateway.status.database import StatusError, read_status
from gateway.status.model import StationStatus, status_from_json, status_json
from gateway.status.render import render
from gateway.status.server import NoAnswer, ask_service, candidate_paths

#: Clear the terminal and go to its top left corner (ANSI), for --watch on a tty.
CLEAR = "\x1b[H\x1b[2J"


def current_status(config: Config) -> tuple[StationStatus, str]:
    """The live status if the service answers, else the database's; and why the database.

    StatusError if the service does not answer and the database cannot be read either.
    """
    database = config.storage.path
    try:
        reply = ask_service(candidate_paths(database), database)
        return status_from_json(reply["status"]), ""
    except (NoAnswer, ValueError, TypeError) as exc:
        why = f"the service did not answer: {exc}"
    return read_status(database, config.station.area), why


def _show(config: Config, as_json: bool, compact: bool) -> None:
    report, why = current_status(config)
    if as_json:
        doc: dict[str, Any] = status_json(report)
        if why:
            doc["note"] = why
        indent = None if compact else 2
        click.echo(json.dumps(doc, ensure_ascii=False, indent=indent))
    else:
        click.echo(render(report, why))


@click.command("status")
@config_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the PROTOCOL §3 state fields plus last_readings, alerts, receipts and "
    "programmes as JSON.",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Repeat every --interval seconds (in place on a terminal) until Ctrl-C.",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.2, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
def status(config_path: Path, as_json: bool, watch: bool, interval: float) -> None:
    """Broker, backlog, sensors, alerts and receipts: live from the running service, else from
    the database (it says which)."""
    config = load_or_exit(config_path)
    tty = sys.stdout.isatty()
    if watch:
        # Ctrl-C ends --watch even when it was started with SIGINT ignored (inherited from a
        # parent that ignores it, as a shell does for a job started in the background).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            if watch and tty:
                click.echo(CLEAR, nl=False)
            try:
                # Not on a terminal, --watch --json prints one JSON document per line.
                _show(config, as_json, compact=watch and not tty)
            except StatusError as exc:
                click.echo(f"{config_path}: storage.path: {exc}", err=True)
                if not watch:
                    sys.exit(2)
            if not watch:
                return
            if not tty and not as_json:
                click.echo("")
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return
