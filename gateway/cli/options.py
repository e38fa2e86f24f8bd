"""What every `cunxiang` command that reads the station's config shares: the -c option and
loading the file so that a technician sees every problem and the command exits 1.

Its own module so that the command modules (cli, cli_status, ...) need not import each other.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from gateway.config.loader import load_config
from gateway.config.model import Config
from gateway.config.problems import ConfigError

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

_Command = TypeVar("_Command", bound=Callable[..., Any])

#: What every centre tool (alert, command, programme send) needs to sign and publish.
_SIGNER_OPTIONS = (
    click.option("--broker", required=True, help="HOST:PORT of the centre's MQTT broker."),
    click.option(
        "--key",
        "key_file",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Private key file made by `cunxiang keygen`.",
    ),
    click.option("--key-name", required=True, help="The key's name in the stations' trusted_keys."),
)


def signer_options(command: _Command) -> _Command:
    """--broker, --key and --key-name, in that order, on a centre tool's command."""
    for option in reversed(_SIGNER_OPTIONS):
        command = option(command)
    return command


#: `cunxiang run`'s exit code for a config it cannot use (sysexits.h EX_CONFIG). The unit
#: does not restart on it (RestartPreventExitStatus=78): restarting cannot fix a typo, and the
#: unit stays failed with every problem in the journal until the technician fixes the file.
EX_CONFIG = 78


def load_or_exit(path: Path, code: int = 1) -> Config:
    """Load the config, or print every problem and exit with `code` (1 unless told)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        count = len(exc.problems)
        click.echo(f"{path}: {count} problem{'s' if count != 1 else ''} found:", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(code)
