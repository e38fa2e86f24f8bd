"""The push-to-talk button of the village microphone: a debounced GPIO input.

Wiring: one side of a momentary switch to a GPIO pin (BCM numbering, `microphone.ptt_pin`),
the other to ground; the pin's internal pull-up holds it high, so pressed reads low. A
long cable to the village official's desk picks up noise and the switch bounces, so the
edges go through the drivers' own debouncer (gpiozero's `bounce_time` is not honoured by
its `MockFactory`, and on real pins can swallow the last edge): one press, one release.
A pin that cannot be claimed is retried with back-off and reported through `on_fault`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from drivers.base import Health, Reading
from drivers.gpio_input import GpioInputDriver

log = logging.getLogger(__name__)


class PushToTalk(GpioInputDriver):
    """Calls `on_change(True)` when the button is pressed and `on_change(False)` on release."""

    def __init__(
        self,
        pin: int,
        on_change: Callable[[bool], None],
        *,
        debounce_s: float = 0.05,
        on_fault: Callable[[str], None] | None = None,
        pin_factory: Any = None,
    ) -> None:
        self._on_change_cb = on_change
        self._on_fault_cb = on_fault
        super().__init__(
            "ptt",
            self._health,
            pin=pin,
            pull_up=True,
            debounce_s=debounce_s,
            report_s=3600.0,
            pin_factory=pin_factory,
        )

    def _health(self, item: Reading | Health) -> None:
        if isinstance(item, Health) and not item.ok and self._on_fault_cb is not None:
            self._on_fault_cb(item.reason)

    def _on_ready(self, state: bool) -> None:
        if state:
            log.warning("the push-to-talk button is held at start; waiting for its release")

    def _on_change(self, state: bool) -> None:
        self._on_change_cb(state)

    def _on_period(self) -> None:
        """Nothing to report periodically."""
