"""A dry contact on a GPIO pin (config type ``gpio_contact``): smoke detector relay, float switch.

Wiring with ``active_low = true`` (the default): the contact between the GPIO pin and GND; the
driver enables the Pi's internal pull-up, so an open contact reads high (inactive) and a closed one
low (active)::

    GPIO17 ──┬── contact (NO relay of the smoke detector, float switch) ──┐
             └─ internal pull-up to 3.3 V                                 GND

With ``active_low = false`` the contact goes between the pin and 3.3 V and the internal pull-down
is used. Use a normally-open (NO) contact, closed on alarm; a device with only a normally-closed
contact needs a small interposing relay. Never put 5 V or 12 V from a detector on a GPIO pin.

Readings: ``quantity`` (default ``smoke``) with a `bool` value, True while the contact is active:
one at once when the pin is claimed, one at once for every debounced change (first edge reported
immediately, bounce ignored for ``debounce_s``, the final level always reported), and the
current state every ``report_s`` seconds.
"""

from __future__ import annotations

from typing import Any

from drivers.base import BOOLEAN_QUANTITIES, Clock, Emit
from drivers.gpio_input import GpioInputDriver


class GpioContactDriver(GpioInputDriver):
    """A debounced dry contact reporting a boolean quantity (see the module docstring)."""

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        pin: int | str,
        active_low: bool = True,
        quantity: str = "smoke",
        debounce_s: float = 0.05,
        report_s: float = 60,
        pin_factory: Any = None,
        clock: Clock | None = None,
    ) -> None:
        if quantity not in BOOLEAN_QUANTITIES:
            allowed = ", ".join(sorted(BOOLEAN_QUANTITIES))
            raise ValueError(f"quantity of a contact must be one of {allowed}, not {quantity!r}")
        super().__init__(
            name,
            emit,
            pin=pin,
            pull_up=active_low,
            debounce_s=debounce_s,
            report_s=report_s,
            pin_factory=pin_factory,
            clock=clock,
        )
        self.active_low = active_low
        self.quantity = quantity

    def _on_ready(self, state: bool) -> None:
        self._report(self.quantity, state)

    def _on_change(self, state: bool) -> None:
        self._count("changes")
        self._report(self.quantity, state)

    def _on_period(self) -> None:
        self._report(self.quantity, self._debouncer.state)
