"""The `cunxiang` command line: one entry point for the service and its tools.

Technicians use `check-config`, `status` and `speaker-test`; systemd runs
`run`; the county centre uses `keygen` and `alert send`. Each command is thin:
it parses options with click and calls the module that does the work.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gateway import __version__
from gateway.config import Config, ConfigError, load_config

DEFAULT_CONFIG = Path("/etc/cunxiang/gateway.toml")

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The station's config file.",
)


def load_or_exit(path: Path) -> Config:
    """Load the config, or print every problem and exit 1."""
    try:
        return load_config(path)
    except ConfigError as exc:
        count = len(exc.problems)
        click.echo(f"{path}: {count} problem{'s' if count != 1 else ''} found:", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cunxiang")
def main() -> None:
    """Cunxiang: the village emergency station gateway."""


@main.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the config file offline; exit 0 if it can be used, 1 if not."""
    config = load_or_exit(config_path)
    click.echo(
        f"{config_path}: OK — station {config.station.id} (area {config.station.area}), "
        f"{len(config.sensors)} sensors, {len(config.rules)} rules, "
        f"{len(config.security.trusted_keys)} trusted keys"
    )
