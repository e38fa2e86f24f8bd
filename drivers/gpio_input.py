"""What the GPIO drivers share: a gpiozero input device, our debouncer, and a timed worker.

The pin is reached only through a gpiozero `DigitalInputDevice` built on the given
``pin_factory`` (None means gpiozero's default: lgpio on a Raspberry Pi; tests pass a
`MockFactory`). Edges arrive on gpiozero's callback thread and go through the `Debouncer` at
once; the worker thread settles the debouncer when its window ends and runs the periodic report.
A pin that cannot be claimed is a ``port_unavailable`` fault, retried with back-off.
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from typing import Any

from gpiozero import DigitalInputDevice

from drivers.base import REASON_PORT_UNAVAILABLE, Clock, DoublingBackoff, Driver, Emit
from drivers.debounce import Debouncer

log = logging.getLogger(__name__)

#: The worker re-reads the clock at least this often, so an injected clock that jumps ahead is
#: noticed promptly; on the real clock this costs a few wake-ups a second.
MAX_WAIT_S = 0.25


class GpioInputDriver(Driver):
    """A debounced two-state input with a periodic report (see the module docstring)."""

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        pin: int | str,
        pull_up: bool,
        debounce_s: float,
        report_s: float,
        pin_factory: Any = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name, emit, clock=clock)
        if report_s <= 0:
            raise ValueError(f"report_s must be above 0, not {report_s}")
        if debounce_s < 0:
            raise ValueError(f"debounce_s must be 0 or more, not {debounce_s}")
        self.pin = pin
        self.pull_up = pull_up
        self.debounce_s = float(debounce_s)
        self.report_s = float(report_s)
        self._pin_factory = pin_factory
        self._wake = threading.Event()
        self._debouncer = Debouncer(self.debounce_s, False)
        self._device: DigitalInputDevice | None = None

    # -- subclass hooks (called with the lock held) ----------------------------------------

    @abstractmethod
    def _on_ready(self, state: bool) -> None:
        """The pin has been claimed and reads `state` (debounced state starts there)."""

    @abstractmethod
    def _on_change(self, state: bool) -> None:
        """The debounced state changed to `state`."""

    @abstractmethod
    def _on_period(self) -> None:
        """`report_s` has passed since the last periodic report."""

    def _on_close(self) -> None:
        """The worker is about to release the pin (the driver is stopping)."""

    @property
    def state(self) -> bool:
        """The debounced state (True = active)."""
        with self._lock:
            return self._debouncer.state

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = DoublingBackoff()
        while not self.stopping:
            device = self._open()
            if device is None:
                self._fault(REASON_PORT_UNAVAILABLE)
                self._wait(backoff.next())
                continue
            try:
                self._watch(device)
            finally:
                with self._lock:
                    self._on_close()
                    self._device = None
                device.close()

    def _open(self) -> DigitalInputDevice | None:
        try:
            device = DigitalInputDevice(
                self.pin, pull_up=self.pull_up, pin_factory=self._pin_factory
            )
        except Exception as exc:  # gpiozero and its back ends raise many kinds
            self._count("open_failures")
            self._log_open_failure(f"GPIO {self.pin}", exc)
            return None
        with self._lock:
            self._device = device
            self._debouncer = Debouncer(self.debounce_s, bool(device.is_active))
            self._on_ready(self._debouncer.state)
        device.when_activated = self._activated
        device.when_deactivated = self._deactivated
        return device

    def _activated(self) -> None:
        self._edge(True)

    def _deactivated(self) -> None:
        self._edge(False)

    def _edge(self, raw: bool) -> None:
        self._count("edges")
        with self._lock:
            for state in self._debouncer.edge(raw, self._clock.monotonic()):
                self._on_change(state)
        self._wake.set()

    def _watch(self, device: DigitalInputDevice) -> None:
        next_report = self._clock.monotonic() + self.report_s
        while not self.stopping:
            now = self._clock.monotonic()
            with self._lock:
                for state in self._debouncer.settle(bool(device.is_active), now):
                    self._on_change(state)
                deadline = self._debouncer.deadline()
                if now >= next_report:
                    self._on_period()
                    next_report += self.report_s
                    if next_report <= now:  # the clock jumped: no burst of catch-up reports
                        next_report = now + self.report_s
            wake_at = next_report if deadline is None else min(next_report, deadline)
            self._wake.wait(min(max(0.0, wake_at - now), MAX_WAIT_S))
            self._wake.clear()

    def _interrupt(self) -> None:
        self._wake.set()
