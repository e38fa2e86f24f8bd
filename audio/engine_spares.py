"""Warm espeak-ng processes, one per voice, started ahead and waiting for their text.

Most of what a short espeak-ng render costs is the engine starting: it scans
its voice folder and loads the voice and its dictionary (about 20 ms of CPU,
60–100 ms on a busy 2-core machine) before it reads a word. espeak-ng does all
that *before* it reads standard input, so a process started ahead with
``--stdin -w FILE`` sits ready, blocked on its input, and says a sentence
within a few milliseconds of getting it. This keeps one such spare per voice
that has been used: the first sentence of a text alert (no pre-tone to hide
behind) renders in milliseconds instead of waiting for a cold start.

A spare is spawned at the engine's lower priority (``nice``). The sentence an
alert's first sound waits for asks for the service's own priority back
(``urgent``); that needs the right to raise priority (root, CAP_SYS_NICE or
RLIMIT_NICE), and without it the spare still saves the start-up. A spare that
died meanwhile is dropped and the caller starts the engine cold. At exit the
spares are killed and their files removed; if the service is killed instead,
each spare reads end-of-input, says nothing and exits, and its empty file is
removed the next time the cache is opened.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SPARE_PREFIX = "spare-"


@dataclass
class Spare:
    """A started engine for one voice, writing into ``out`` once given its text."""

    proc: subprocess.Popen[bytes]
    out: Path


class EngineSpares:
    """At most one ready engine per voice (module docstring)."""

    def __init__(self, engine: str, speed_wpm: int, folder: Path, nice: int) -> None:
        self.engine = engine
        self.speed_wpm = speed_wpm
        self.folder = folder
        self.nice = nice
        self._lock = threading.Lock()
        self._spares: dict[str, Spare] = {}
        self._closed = False
        _remove_stale(folder)
        atexit.register(self.close)

    def take(self, voice: str, *, urgent: bool) -> Spare | None:
        """The ready engine for ``voice`` (then one is started for next time), or None."""
        with self._lock:
            spare = self._spares.pop(voice, None)
        if spare is not None and spare.proc.poll() is not None:
            spare.out.unlink(missing_ok=True)
            spare = None
        if spare is not None and urgent and self.nice > 0:
            with contextlib.suppress(OSError):  # no right to raise it: it stays niced
                os.setpriority(os.PRIO_PROCESS, spare.proc.pid, os.getpriority(os.PRIO_PROCESS, 0))
        self.prepare(voice)
        return spare

    def prepare(self, voice: str) -> None:
        """Start a spare engine for ``voice`` unless there is one."""
        with self._lock:
            if self._closed or voice in self._spares:
                return
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(
                    dir=self.folder, prefix=f"{SPARE_PREFIX}{os.getpid()}-", suffix=".tmp"
                )
                os.close(fd)
                args = ["-v", voice, "-s", str(self.speed_wpm), "-w", name, "--stdin"]
                proc = subprocess.Popen(
                    [self.engine, *args],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            except OSError as exc:
                log.debug("no spare %s for %s: %s", self.engine, voice, exc)
                return
            if self.nice > 0:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, proc.pid, min(19, os.nice(0) + self.nice))
            self._spares[voice] = Spare(proc, Path(name))

    def close(self) -> None:
        """Kill the spares and remove their files."""
        with self._lock:
            self._closed = True
            spares, self._spares = list(self._spares.values()), {}
        for spare in spares:
            with contextlib.suppress(OSError):
                spare.proc.kill()
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                spare.proc.communicate(timeout=1)
            spare.out.unlink(missing_ok=True)


def _remove_stale(folder: Path) -> None:
    """Files of spares whose process is gone (a service that was killed)."""
    with contextlib.suppress(OSError):
        for path in folder.glob(f"{SPARE_PREFIX}*.tmp"):
            pid = path.name[len(SPARE_PREFIX) :].split("-")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                path.unlink(missing_ok=True)
