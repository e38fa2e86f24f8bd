"""A station process for fault scenarios: `cunxiang run` that can be killed, starved, cut off and restarted.

Why this module exists: a fault scenario does more to the station than other tests do. This
builds on harness/station.py (`StationProcess`, `write_config`, the centre's `Centre` key) and
adds what the scenarios need around it:

* `FaultStation` starts the real `python -m gateway run` optionally inside a network namespace
  (``ip netns exec NS …``), optionally with module constants changed first
  (harness/tuned_gateway.py), and with a fresh ALSA capture per start, so the samples of
  each life of the process can be told apart (`captures`).
* `edit_config` changes a written config in place (another broker address, another
  storage path).
The sounds it is given are harness/sounds.py; its database is looked at through
harness/station_db.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path

from harness.alsa_capture import AlsaCapture, write_alsa_config
from harness.station import StationProcess


class FaultStation(StationProcess):
    """`cunxiang run` with a namespace prefix, tuned constants and one ALSA capture per start."""

    def __init__(
        self,
        config: Path,
        *,
        netns: str | None = None,
        tune: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(config)
        self.netns = netns
        self.tune = dict(tune or {})
        self.captures: list[AlsaCapture] = []

    def command_line(self) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        if not self.tune:
            return [*prefix, *super().command_line()]
        settings = [f"{name}={value!r}" for name, value in self.tune.items()]
        args = ["run", "-c", str(self.config), "--log-level", self.log_level]
        return [*prefix, sys.executable, "-m", "harness.tuned_gateway", *settings, "--", *args]

    def start_env(self) -> dict[str, str]:
        """A fresh ALSA capture for this start."""
        capture = write_alsa_config(self.config.parent / f"alsa-{self.starts}")
        self.captures.append(capture)
        return capture.env(self.env)

    @property
    def capture(self) -> AlsaCapture:
        """The capture of the current (latest) start."""
        return self.captures[-1]

    def exited_by_itself(self) -> int | None:
        """The exit code if the process ended without being asked to, else None."""
        return None if self.proc is None else self.proc.poll()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait for the log line the service writes once everything is wired."""
        marker = f"--- start {self.starts} ---"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if "running:" in log[log.rfind(marker) :]:
                return
            if not self.running():
                raise AssertionError(f"the station exited at start:\n{log[-3000:]}")
            time.sleep(0.02)
        raise AssertionError(f"the station was not running within {timeout} s")


def edit_config(path: Path, replacements: dict[str, str]) -> None:
    """Replace exact lines' text in a written config; KeyError if one is not there."""
    text = path.read_text(encoding="utf-8")
    for old, new in replacements.items():
        if old not in text:
            raise KeyError(f"{old!r} is not in {path}")
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
