"""The `cunxiang export` command: readings and events for a time range, to a file or stdout.

A thin click layer over gateway/store/export.py, which it imports only when the command runs: the
export is built on sqlite-utils, and the service (which imports gateway/cli/main.py) must not load
it. Bad input exits 1 with what would work. gateway/cli/main.py registers it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn, cast

import click

from gateway.cli.options import config_option, load_or_exit

if TYPE_CHECKING:  # the module itself is imported when the command runs
    from gateway.store.export import Selection

Progress = Callable[[int, float], None] | None


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(1)


class _ProgressLine:
    """One line on stderr (a terminal), rewritten in place; ended once the export is done."""

    shown = False

    def __call__(self, records: int, fraction: float) -> None:
        self.shown = True
        click.echo(f"\r  {records:,} records ({fraction:.0%})", nl=False, err=True)


@click.command("export")
@config_option
@click.option("--since", help="From this time on: ISO (2026-07-01T08:00) or a span back (3d).")
@click.option("--until", help="Before this time: ISO or a span back from now (12h).")
@click.option("--sensor", help="Only this sensor's readings and events.")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write to this file (default: standard output).",
)
def export(
    config_path: Path,
    since: str | None,
    until: str | None,
    sensor: str | None,
    fmt: str,
    out: Path | None,
) -> None:
    """Readings and events from the station's database, e.g. for a USB stick (works while the
    service runs)."""
    from drivers.base import now_ms
    from gateway.store import export as exporting

    config = load_or_exit(config_path)
    now = now_ms()
    bounds: dict[str, int | None] = {}
    for name, text in (("since", since), ("until", until)):
        try:
            bounds[name] = None if text is None else exporting.parse_time(text, now)
        except ValueError as exc:
            _fail(f"--{name}: {exc}")
    selection = exporting.Selection(bounds["since"], bounds["until"], sensor)
    progress = _ProgressLine() if sys.stderr.isatty() else None
    form = cast(Literal["jsonl", "csv"], fmt)
    started = time.monotonic()
    try:
        if out is None:
            count = exporting.export(config.storage.path, selection, form, sys.stdout, progress)
        else:
            count = _to_file(config.storage.path, selection, form, out, progress)
    except exporting.DatabaseError as exc:
        _fail(f"{config_path}: storage.path: {exc}")
    except exporting.ExportError as exc:
        _fail(str(exc))
    if progress is not None and progress.shown:
        click.echo("", err=True)
    if out is not None:
        click.echo(
            f"{out}: {count:,} records ({fmt}) in {time.monotonic() - started:.1f} s", err=True
        )


def _to_file(
    database: Path,
    selection: Selection,
    fmt: Literal["jsonl", "csv"],
    out: Path,
    progress: Progress,
) -> int:
    """Write to `out` through a temporary file, synced, so a stick pulled early holds no
    half file under the real name."""
    from gateway.store import export as exporting

    part = out.with_name(out.name + ".part")
    try:
        with part.open("w", encoding="utf-8", newline="") as file:
            count = exporting.export(database, selection, fmt, file, progress)
            file.flush()
            os.fsync(file.fileno())
        part.replace(out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        _fail(f"{out}: cannot write: {exc}")
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    return count
