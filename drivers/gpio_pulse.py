"""A tipping-bucket rain gauge on a GPIO pin (config type ``gpio_pulse``).

Wiring: the gauge's reed switch between the GPIO pin and GND; the driver enables the internal
pull-up, so every tip of the bucket pulls the pin low for a moment (active-low)::

    GPIO22 ──┬── reed switch (closes once per tip) ──┐
             └─ internal pull-up to 3.3 V           GND

Every debounced activation is one tip of ``per_pulse`` mm (0.2 mm for the common 200 cm²
gauges; check the gauge's label). Every ``report_s`` seconds the driver reports ``rain_mm``: the
rain since the previous report, 0.0 when dry. The count is taken and reset under one lock, so a
tip that lands during a report goes into this report or the next, never nowhere; on `stop()` the
tips not yet reported go out in a last reading.
"""

from __future__ import annotations

from typing import Any

from drivers.base import Clock, Emit
from drivers.gpio_input import GpioInputDriver

QUANTITY = "rain_mm"


class GpioPulseDriver(GpioInputDriver):
    """Counts debounced pulses and reports them as rain (see the module docstring)."""

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        pin: int | str,
        per_pulse: float = 0.2,
        report_s: float = 60,
        debounce_s: float = 0.01,
        pin_factory: Any = None,
        clock: Clock | None = None,
    ) -> None:
        if per_pulse <= 0:
            raise ValueError(f"per_pulse must be above 0 mm, not {per_pulse}")
        super().__init__(
            name,
            emit,
            pin=pin,
            pull_up=True,
            debounce_s=debounce_s,
            report_s=report_s,
            pin_factory=pin_factory,
            clock=clock,
        )
        self.per_pulse = float(per_pulse)
        self._pending_pulses = 0

    def _on_ready(self, state: bool) -> None:
        self._recovered()

    def _on_change(self, state: bool) -> None:
        if state:
            self._pending_pulses += 1
            self._count("pulses")

    def _on_period(self) -> None:
        self._flush()

    def _on_close(self) -> None:
        if self.stopping and self._pending_pulses:
            self._flush()

    def _flush(self) -> None:
        pulses, self._pending_pulses = self._pending_pulses, 0
        self._report(QUANTITY, round(pulses * self.per_pulse, 6))
