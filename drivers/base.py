"""The driver framework: the records a driver emits and the life cycle every driver shares.

A driver turns one port or pin into a stream of `Reading`s and `Health` changes and hands them to
an `Emit` callback. It knows nothing of MQTT or SQLite; the gateway decides what to do with what it
emits. Everything a driver needs from the outside world (a clock, a serial port, a pin factory)
comes in through its constructor so that a test can hand it a fake clock, a pseudo-terminal or a
gpiozero `MockFactory`.

This module also owns the two vocabularies the config validator shares with the drivers:
`PHYSICAL_RANGE` (numeric quantities and the values that can physically occur; anything outside
is flagged ``out_of_range`` and raises a sensor fault) and `BOOLEAN_QUANTITIES`; and `now_ms()`,
the station's one "now in epoch ms", here because drivers are the lowest layer that needs it
(audio and gateway import drivers, never the reverse).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

_P = TypeVar("_P")  # an open port or instrument

#: Numeric quantities (docs/protocol.md §4) and the range a working sensor can report. Levels are
#: relative to the gauge's zero (depth or stage), not an elevation above sea level.
PHYSICAL_RANGE: dict[str, tuple[float, float]] = {
    "co_ppm": (0.0, 1000.0),
    "water_level_m": (-20.0, 300.0),
    "rain_mm": (0.0, 1000.0),
    "temperature_c": (-55.0, 125.0),
    "humidity_pct": (0.0, 100.0),
    "battery_v": (0.0, 60.0),
}

#: On/off quantities: a contact, a float switch, a mains monitor. Values are `bool`.
BOOLEAN_QUANTITIES: frozenset[str] = frozenset({"smoke", "water_present", "mains_ok", "door_open"})

#: What a quantity name may look like (drivers may add quantities beyond the two tables above).
QUANTITY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")

#: Flags a reading may carry (docs/protocol.md §4); the gateway adds ``clock_unsynced`` itself.
FLAG_OUT_OF_RANGE = "out_of_range"
FLAG_ESTIMATED = "estimated"

#: Health reasons drivers use (docs/protocol.md §5 ``sensor_fault``).
REASON_NO_DATA = "no_data"
REASON_BAD_FRAMES = "bad_frames"
REASON_PORT_UNAVAILABLE = "port_unavailable"
REASON_OUT_OF_RANGE = "out_of_range"
REASON_DEVICE_ERROR = "device_error"
REASON_DRIVER_ERROR = "driver_error"


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value, as it will go into the outbox."""

    sensor: str
    quantity: str
    value: float | bool
    ts: int
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Health:
    """A sensor fault (``ok=False`` with a reason) or its end (``ok=True``, reason ``""``)."""

    sensor: str
    ok: bool
    reason: str
    ts: int


Emit = Callable[[Reading | Health], None]


class Clock(Protocol):
    """Where a driver gets time from: monotonic seconds for intervals, epoch ms for timestamps."""

    def monotonic(self) -> float: ...

    def time_ms(self) -> int: ...


def now_ms() -> int:
    """Wall-clock time, integer epoch milliseconds UTC."""
    return time.time_ns() // 1_000_000


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ms(self) -> int:
        return now_ms()


SYSTEM_CLOCK = SystemClock()


def range_flags(quantity: str, value: float | bool) -> tuple[str, ...]:
    """``("out_of_range",)`` when a numeric value lies outside its quantity's physical range."""
    bounds = PHYSICAL_RANGE.get(quantity)
    if bounds is None or isinstance(value, bool):
        return ()
    low, high = bounds
    if math.isfinite(value) and low <= value <= high:
        return ()
    return (FLAG_OUT_OF_RANGE,)


class DoublingBackoff:
    """Delays between attempts to reopen a port or restart a driver: `first`, doubling to `cap` s."""

    def __init__(self, first: float = 0.5, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


class Driver(ABC):
    """Base of every driver: a name, an emit callback, a clock, a worker thread, health and stats.

    `start()` spawns one daemon thread running `_run()`; `stop()` asks it to end and joins it
    within about a second. An exception escaping `_run()` is logged, reported as a
    ``driver_error`` fault and `_run()` is started again after a back-off: a driver never dies
    quietly and never takes the service down.
    """

    #: How long `stop()` waits for the worker thread.
    join_timeout_s = 1.0

    def __init__(self, name: str, emit: Emit, *, clock: Clock | None = None) -> None:
        if not name:
            raise ValueError("a sensor needs a name")
        self.name = name
        self._emit = emit
        self._clock: Clock = clock or SYSTEM_CLOCK
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stats: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._health_ok = True
        self._health_reason = ""

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the worker thread. A driver is started once."""
        if self._thread is not None:
            raise RuntimeError(f"driver {self.name!r} was already started")
        self._thread = threading.Thread(
            target=self._supervise, name=f"driver-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the worker to end, release the port or pin, and join within ~1 s."""
        self._stop.set()
        self._interrupt()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.join_timeout_s)
            if thread.is_alive():
                log.warning("driver %s did not stop within %.1f s", self.name, self.join_timeout_s)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def stats(self) -> dict[str, int]:
        """Counters such as frames_ok, bad_frames, garbage_bytes, reopen_count (a copy)."""
        with self._lock:
            return dict(self._stats)

    @property
    def health(self) -> Health:
        """The current health as the last emitted (or initial, ok) state."""
        with self._lock:
            return Health(self.name, self._health_ok, self._health_reason, self._clock.time_ms())

    @abstractmethod
    def _run(self) -> None:
        """The worker: return (or raise) only when `self._stop` is set or something broke."""

    def _keep_port_open(
        self,
        port: str,
        open_port: Callable[[], _P | None],
        use: Callable[[_P], None],
        close: Callable[[_P], None],
        backoff: DoublingBackoff,
    ) -> None:
        """Open the port, use it until it fails, close it, back off, again — until stopped.

        A port that cannot be opened or fails in use is a ``port_unavailable`` fault; the
        caller's `use` resets `backoff` once the port works. Serial errors are OSErrors.
        """
        while not self.stopping:
            handle = open_port()
            if handle is None:
                self._fault(REASON_PORT_UNAVAILABLE)
                self._wait(backoff.next())
                continue
            try:
                use(handle)
            except OSError as exc:
                if self.stopping:
                    return
                log.warning("sensor %s: port %s failed: %s", self.name, port, exc)
                self._count("port_errors")
                self._fault(REASON_PORT_UNAVAILABLE)
            finally:
                close(handle)
            self._wait(backoff.next())

    def _interrupt(self) -> None:  # noqa: B027 - an optional hook
        """Hook for `stop()`: unblock the worker (close a port, wake a wait)."""

    def _supervise(self) -> None:
        backoff = DoublingBackoff()
        while not self._stop.is_set():
            try:
                self._run()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("driver %s failed; restarting it", self.name)
                self._count("driver_errors")
                self._fault(REASON_DRIVER_ERROR)
                self._stop.wait(backoff.next())
            else:
                return

    # -- helpers for subclasses ------------------------------------------------------------

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._stats[key] += n

    def _wait(self, seconds: float) -> bool:
        """Sleep up to `seconds` unless stopped; True when the driver is stopping."""
        return self._stop.wait(max(0.0, seconds))

    def _report(self, quantity: str, value: float | bool, flags: tuple[str, ...] = ()) -> Reading:
        """Emit a reading, flagged and with a fault when it lies outside the physical range.

        A reading in range ends any fault (a sensor that produces good values is well); the
        health change is emitted before the reading so a consumer sees the sensor ok first.
        """
        extra = range_flags(quantity, value)
        reading = Reading(self.name, quantity, value, self._clock.time_ms(), flags + extra)
        with self._lock:
            if extra:
                self._count("out_of_range")
                self._set_health(False, REASON_OUT_OF_RANGE, reading.ts)
            else:
                self._set_health(True, "", reading.ts)
            self._send(reading)
        return reading

    def _log_open_failure(self, what: str, exc: BaseException) -> None:
        """Say why a port or pin cannot be opened: loudly the first time, quietly on retries."""
        with self._lock:
            retry = self._health_reason == REASON_PORT_UNAVAILABLE
        level = logging.DEBUG if retry else logging.WARNING
        log.log(level, "sensor %s: cannot open %s: %s", self.name, what, exc)

    def _fault(self, reason: str) -> None:
        self._set_health(False, reason)

    def _recovered(self) -> None:
        self._set_health(True, "")

    def _set_health(self, ok: bool, reason: str, ts: int | None = None) -> None:
        """Emit a Health only when (ok, reason) changes."""
        with self._lock:
            if (ok, reason) == (self._health_ok, self._health_reason):
                return
            self._health_ok, self._health_reason = ok, reason
            if ok:
                log.info("sensor %s ok again", self.name)
            else:
                log.warning("sensor %s fault: %s", self.name, reason)
            when = self._clock.time_ms() if ts is None else ts
            self._send(Health(self.name, ok, reason, when))

    def _send(self, item: Reading | Health) -> None:
        """Hand an item to the gateway; its failure must not kill the driver."""
        try:
            self._emit(item)
        except Exception:
            with self._lock:
                self._stats["emit_errors"] += 1
                n = self._stats["emit_errors"]
            if n & (n - 1) == 0:  # the 1st, 2nd, 4th, 8th … failure: loud, but no log flood
                log.exception("sensor %s: the consumer rejected %r (%d times)", self.name, item, n)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
