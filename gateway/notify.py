"""Tell systemd how the service is doing: READY, WATCHDOG, STATUS, STOPPING.

Why this module exists: the unit is ``Type=notify`` with ``WatchdogSec=``, so
systemd restarts the service when the pings stop. A ping must mean "the
station works", not merely "the process exists": the event loop and every
worker (sensor threads, the sync loop, the audio thread) must be making
progress. :class:`ProgressWatchdog` tracks that; :func:`run_watchdog` pings
only while it is healthy and puts a one-line summary into ``systemctl status``.

The sd_notify protocol is one datagram of ``KEY=VALUE`` lines sent to the
AF_UNIX socket named by ``NOTIFY_SOCKET`` (a leading ``@`` means the Linux
abstract namespace). Without ``NOTIFY_SOCKET`` (a technician running
``cunxiang run`` by hand) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Used when systemd gives no watchdog interval: STATUS still gets refreshed.
DEFAULT_TICK_S = 5.0
# systemd shows STATUS on one line; keep it short and single-line.
MAX_STATUS_CHARS = 200


def _socket_address(raw: str) -> str | bytes | None:
    """Turn a NOTIFY_SOCKET value into an address ``socket.sendto`` accepts."""
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    return None  # vsock and other forms are not used on a station


class SystemdNotifier:
    """Sends sd_notify messages; does nothing when not started by systemd.

    Thread-safe: workers in threads may call :meth:`status`. A send that fails
    is logged once and otherwise ignored: losing a notification must never take
    the service down (systemd will notice missing pings on its own).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when a notify socket was given (we run under systemd)."""
        return self._address is not None

    def ready(self) -> None:
        """The store is open and the drivers have started."""
        self._send("READY=1")

    def stopping(self) -> None:
        """Shutdown has begun; systemd waits up to TimeoutStopSec."""
        self._send("STOPPING=1")

    def status(self, text: str) -> None:
        """A one-line summary shown by ``systemctl status cunxiang``."""
        line = " ".join(text.split())[:MAX_STATUS_CHARS]
        self._send(f"STATUS={line}")

    def watchdog(self) -> None:
        """Keep-alive: the service is making progress."""
        self._send("WATCHDOG=1")

    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half of WatchdogSec, or None when no watchdog is set.

        WATCHDOG_PID, when present, must be this process (a child that inherited
        the environment must not ping on its parent's behalf).
        """
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        return usec / 2_000_000 if usec > 0 else None

    def close(self) -> None:
        """Release the socket (idempotent)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.sendto(message.encode(), self._address)
            except OSError as exc:
                if not self._warned:
                    log.warning("cannot notify systemd (%s): %s", message.split("=")[0], exc)
                    self._warned = True


@dataclass
class _Worker:
    max_silence_s: float
    last_beat: float


class ProgressWatchdog:
    """Knows whether every registered worker has made progress recently.

    A worker registers once with the longest silence it may keep (a sensor
    polled every 5 s might allow 30 s) and calls the returned ``beat()``
    whenever it makes progress. ``beat`` is a plain attribute write, cheap and
    safe to call from any thread.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()

    def register(self, name: str, max_silence_s: float) -> Callable[[], None]:
        """Start tracking ``name``; returns its ``beat()``. Counts as a first beat."""
        if max_silence_s <= 0:
            raise ValueError(f"max_silence_s for {name!r} must be > 0, got {max_silence_s}")
        worker = _Worker(max_silence_s=max_silence_s, last_beat=self._clock())
        with self._lock:
            if name in self._workers:
                raise ValueError(f"worker {name!r} is already registered")
            self._workers[name] = worker

        def beat() -> None:
            worker.last_beat = self._clock()

        return beat

    def unregister(self, name: str) -> None:
        """Stop tracking a worker that ended on purpose (unknown names are ignored)."""
        with self._lock:
            self._workers.pop(name, None)

    def healthy(self, now: float | None = None) -> tuple[bool, list[str]]:
        """(every worker beat within its limit, names of those that did not)."""
        at = self._clock() if now is None else now
        with self._lock:
            items = list(self._workers.items())
        stuck = sorted(n for n, w in items if at - w.last_beat > w.max_silence_s)
        return (not stuck, stuck)

    def silence_s(self, name: str, now: float | None = None) -> float:
        """Seconds since ``name`` last beat (KeyError when not registered)."""
        at = self._clock() if now is None else now
        with self._lock:
            return at - self._workers[name].last_beat


def _status_line(status_text: Callable[[], str], stuck: list[str]) -> str:
    try:
        text = status_text()
    except Exception:  # a broken summary must not stop the watchdog
        log.exception("status text failed")
        text = "status unavailable"
    if stuck:
        return f"STUCK: {', '.join(stuck)}; {text}"
    return text


async def run_watchdog(
    notifier: SystemdNotifier,
    progress: ProgressWatchdog,
    status_text: Callable[[], str],
    *,
    interval_s: float | None = None,
) -> None:
    """Ping systemd while every worker makes progress; refresh STATUS each tick.

    Runs until cancelled. The interval defaults to half of WatchdogSec (or
    DEFAULT_TICK_S without a watchdog). Because this coroutine runs on the
    event loop, a blocked loop stops the pings too. When a worker goes silent
    the pings stop, the worker is logged as stuck, and systemd restarts the
    service once WatchdogSec has passed.
    """
    tick = interval_s or notifier.watchdog_interval_s() or DEFAULT_TICK_S
    reported: list[str] = []
    last_status = ""
    while True:
        ok, stuck = progress.healthy()
        if ok:
            notifier.watchdog()
        if stuck != reported:
            _log_stuck_change(progress, stuck, reported)
            reported = stuck
        line = _status_line(status_text, stuck)
        if line != last_status:
            notifier.status(line)
            last_status = line
        await asyncio.sleep(tick)


def _log_stuck_change(progress: ProgressWatchdog, stuck: list[str], before: list[str]) -> None:
    for name in stuck:
        if name in before:
            continue
        try:
            silent = progress.silence_s(name)
        except KeyError:  # unregistered in the meantime
            continue
        log.error(
            "worker %s made no progress for %.1f s; withholding watchdog pings "
            "so systemd restarts the service",
            name,
            silent,
        )
    for name in before:
        if name not in stuck:
            log.warning("worker %s is making progress again", name)
