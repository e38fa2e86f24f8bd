"""The `cunxiang` command line: one entry point for the service and its tools.

Technicians use `check-config`, `status`, `export` and `speaker-test`; systemd runs
`run`; the county centre uses `keygen`, `alert send` and `command send`. Each command is thin:
it parses options with click and calls the module that does the work.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gateway import __version__
from gateway.cli.options import EX_CONFIG, config_option, load_or_exit


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


@main.command("run")
@config_option
@click.option(
    "--log-level", default="info", show_default=True, help="debug, info, warning or error."
)
def run(config_path: Path, log_level: str) -> None:
    """Run the station service in the foreground (systemd runs this)."""
    from drivers.registry import DriverConfigError
    from gateway.logs import setup_logging
    from gateway.service import run_station
    from gateway.store.database_file import StoreError

    config = load_or_exit(config_path, code=EX_CONFIG)
    setup_logging(log_level)
    try:
        sys.exit(run_station(config))
    except StoreError as exc:
        click.echo(f"{config_path}: storage.path: {exc}", err=True)
        sys.exit(2)
    except DriverConfigError as exc:  # a value the schema allows and the driver refuses
        click.echo(f"{config_path}: {exc}", err=True)
        sys.exit(EX_CONFIG)


@main.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder for the demo station's config, database and audio (default: a new temp folder).",
)
@click.option("--seconds", type=float, default=None, help="Stop after this many seconds.")
@click.option(
    "--broker",
    default=None,
    help="HOST:PORT of a broker to play the centre through (default: the config's, localhost:1883).",
)
def demo(directory: Path | None, seconds: float | None, broker: str | None) -> None:
    """A short day at a demo station: simulated sensors, a programme, an alert, a local alarm."""
    from gateway.demo import run_demo

    sys.exit(run_demo(directory, seconds, broker))


@main.command("speaker-test")
@config_option
@click.option("--volume", type=click.FloatRange(0.0, 1.0), default=0.3, show_default=True)
@click.option("--say", default=None, help="Speak this text instead of the chime.")
@click.option(
    "--language", default="zh-CN", show_default=True, help="The language of --say (BCP 47)."
)
def speaker_test(config_path: Path, volume: float, say: str | None, language: str) -> None:
    """Play a short chime (or speak --say) through the amplifier and the loudspeakers."""
    from gateway.cli.speaker_test import play_chime

    config = load_or_exit(config_path)
    ok, message = play_chime(config, volume, say, language)
    click.echo(message, err=not ok)
    sys.exit(0 if ok else 1)


def _register_tools() -> None:
    from gateway.cli.centre import alert, command, keygen
    from gateway.cli.export import export
    from gateway.cli.programmes import programme, programmes
    from gateway.cli.status import status

    main.add_command(status)
    main.add_command(export)
    main.add_command(keygen)
    main.add_command(alert)
    main.add_command(command)
    main.add_command(programme)
    main.add_command(programmes)


_register_tools()
