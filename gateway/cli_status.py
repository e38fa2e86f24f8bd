"""The `cunxiang status` command: the station's state from its database, for a technician.

A thin click layer over gateway/status.py (which reads the database read-only, so it works
while the service runs). gateway/cli.py registers it with ``main.add_command(status)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gateway.cli_options import config_option, load_or_exit
from gateway.status import StatusError, read_status, render, state_json


@click.command("status")
@config_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the PROTOCOL §3 state fields plus last_readings, alerts and receipts as JSON.",
)
def status(config_path: Path, as_json: bool) -> None:
    """Backlog, last sync, broker, sensors, recent alerts and receipts (works while running)."""
    config = load_or_exit(config_path)
    try:
        report = read_status(config.storage.path)
    except StatusError as exc:
        click.echo(f"{config_path}: storage.path: {exc}", err=True)
        sys.exit(2)
    if as_json:
        document = state_json(report, config.station.area)
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        click.echo(render(report, config.station.area))
