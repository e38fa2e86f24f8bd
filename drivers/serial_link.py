"""What every UART sensor shares: opening the port, reading it, and noticing when it goes wrong.

`SerialDriver` owns a pyserial port in its own thread. It opens the port (and keeps trying with a
back-off of 0.5 s doubling to 10 s when the port cannot be opened or vanishes, as a USB adapter does
when it is unplugged), reads whatever bytes arrive and hands them to the subclass's frame parser.
It raises the faults that do not depend on the device:

- ``port_unavailable``: the port cannot be opened or fails while in use;
- ``no_data``: nothing valid for ``timeout_s`` and no bytes at all;
- ``bad_frames``: a run of `BAD_FRAME_RUN` bad frames in a row, or bytes but nothing valid for
  ``timeout_s`` (a wrong baud rate looks like this).

A valid frame ends the fault (`Driver._report`). Subclasses implement `_feed` and may override
`_on_open` (e.g. to send a mode switch command) and `_poll` (e.g. to send a query).
"""

from __future__ import annotations

import contextlib
import logging
from abc import abstractmethod

import serial

from drivers.base import (
    REASON_BAD_FRAMES,
    REASON_NO_DATA,
    Clock,
    DoublingBackoff,
    Driver,
    Emit,
)

log = logging.getLogger(__name__)

#: This many bad frames in a row, with no good one between them, is a ``bad_frames`` fault.
BAD_FRAME_RUN = 5

#: How long one `read()` may block; bounds how late `stop()`, polls and the watchdog run.
READ_SLICE_S = 0.1


class SerialDriver(Driver):
    """A driver that reads a byte stream from a serial port (see the module docstring)."""

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        port: str,
        baud: int,
        timeout_s: float,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name, emit, clock=clock)
        if not port:
            raise ValueError("port must name a serial device, e.g. /dev/ttyUSB0")
        if baud <= 0:
            raise ValueError(f"baud must be a positive number, not {baud}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be above 0, not {timeout_s}")
        self.port = port
        self.baud = baud
        self.timeout_s = float(timeout_s)
        self._serial: serial.Serial | None = None
        self._bad_run = 0
        self._last_good = self._clock.monotonic()
        self._noise_since_good = False
        self._opened_at = self._last_good
        self._backoff = DoublingBackoff()

    # -- subclass hooks --------------------------------------------------------------------

    @abstractmethod
    def _feed(self, data: bytes) -> None:
        """Parse bytes; call `_good_frame()` and `_report()` per valid frame, `_bad_frame()` per bad."""

    def _on_open(self, port: serial.Serial) -> None:
        """Called once each time the port has been opened."""

    def _poll(self, port: serial.Serial, now: float) -> None:
        """Called after every read slice (at least every `READ_SLICE_S`)."""

    # -- frame accounting ------------------------------------------------------------------

    def _good_frame(self) -> None:
        self._count("frames_ok")
        self._bad_run = 0
        self._noise_since_good = False
        self._last_good = self._clock.monotonic()
        self._backoff.reset()

    def _bad_frame(self, n: int = 1) -> None:
        self._count("bad_frames", n)
        self._bad_run += n
        self._noise_since_good = True
        if self._bad_run >= BAD_FRAME_RUN:
            self._fault(REASON_BAD_FRAMES)

    def _garbage(self, n: int) -> None:
        if n:
            self._count("garbage_bytes", n)
            self._noise_since_good = True

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        self._keep_port_open(
            self.port, self._open, self._session, lambda _port: self._close(), self._backoff
        )

    def _open(self) -> serial.Serial | None:
        try:
            port = serial.Serial(self.port, self.baud, timeout=READ_SLICE_S, write_timeout=1.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._count("open_failures")
            self._log_open_failure(self.port, exc)
            return None
        with self._lock:
            if self.stopping:
                port.close()
                return None
            self._serial = port
        self._count("opens")
        if self.stats["opens"] > 1:
            self._count("reopen_count")
        self._opened_at = self._clock.monotonic()
        self._noise_since_good = False
        log.info("sensor %s: opened %s at %d baud", self.name, self.port, self.baud)
        return port

    def _close(self) -> None:
        with self._lock:
            port, self._serial = self._serial, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    def _session(self, port: serial.Serial) -> None:
        self._on_open(port)
        while not self.stopping:
            data = port.read(max(1, port.in_waiting))
            if data:
                self._count("bytes", len(data))
                self._feed(data)
            now = self._clock.monotonic()
            self._poll(port, now)
            self._watchdog(now)

    def _watchdog(self, now: float) -> None:
        """No valid frame for timeout_s (since the last good one or since the port opened)."""
        if now - max(self._last_good, self._opened_at) < self.timeout_s:
            return
        self._fault(REASON_BAD_FRAMES if self._noise_since_good else REASON_NO_DATA)
