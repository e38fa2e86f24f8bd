"""The amplifier relay: on before the first sound, off a while after the last.

Village PA amplifiers are switched by a relay so they do not hum and draw
power all day. A tube or class-AB amplifier needs a moment after power-on
before it passes sound cleanly, and switching it off between two messages
that follow each other closely would cut the second one's start. Hence:

- ``acquire()`` switches the relay on (if it is off) and blocks for whatever
  remains of ``warmup_s`` since it went on;
- ``release()`` switches it off ``release_s`` later, unless ``acquire()`` is
  called again meanwhile.

Wiring: a relay module's IN on the GPIO (BCM numbering) given as
``audio.amp_pin``; ``active_high=False`` for the common low-triggered relay
boards. The pin is driven through a gpiozero ``OutputDevice``, so tests pass
``MockFactory()`` as ``pin_factory``. With ``pin=None`` there is no relay and
every call is a no-op (no warm-up either: there is nothing to warm).
"""

from __future__ import annotations

import logging
import threading
import time

from gpiozero import GPIOZeroError, OutputDevice
from gpiozero.pins import Factory

log = logging.getLogger(__name__)


class AmplifierError(Exception):
    """The relay pin cannot be set up or switched."""


class Amplifier:
    """Switches the amplifier relay around broadcasts; thread-safe."""

    def __init__(
        self,
        pin: int | None,
        active_high: bool = True,
        warmup_s: float = 2.0,
        release_s: float = 10.0,
        pin_factory: Factory | None = None,
    ) -> None:
        self.warmup_s = max(0.0, warmup_s)
        self.release_s = max(0.0, release_s)
        self._lock = threading.Lock()
        self._on_since: float | None = None
        self._generation = 0
        self._timer: threading.Timer | None = None
        self._relay: OutputDevice | None = None
        if pin is not None:
            try:
                self._relay = OutputDevice(
                    pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
                )
            except GPIOZeroError as exc:
                raise AmplifierError(f"amplifier relay on GPIO {pin}: {exc}") from exc

    @property
    def is_on(self) -> bool:
        """Whether the relay is switched on."""
        return self._on_since is not None

    def acquire(self, abort: threading.Event | None = None) -> bool:
        """Switch on and wait out the warm-up; False if ``abort`` was set while waiting."""
        if self._relay is None:
            return True
        with self._lock:
            self._cancel_timer()
            if self._on_since is None:
                self._switch(on=True)
                self._on_since = time.monotonic()
            remaining = self.warmup_s - (time.monotonic() - self._on_since)
        if remaining <= 0:
            return True
        if abort is None:
            time.sleep(remaining)
            return True
        return not abort.wait(remaining)

    def release(self) -> None:
        """Switch off after ``release_s``, unless acquired again before then."""
        if self._relay is None:
            return
        with self._lock:
            self._cancel_timer()
            if self._on_since is None:
                return
            if self.release_s == 0:
                self._switch_off()
                return
            timer = threading.Timer(self.release_s, self._release_due, args=(self._generation,))
            timer.daemon = True
            self._timer = timer
            timer.start()

    def close(self) -> None:
        """Switch off now and free the pin."""
        if self._relay is None:
            return
        with self._lock:
            self._cancel_timer()
            if self._on_since is not None:
                self._switch_off()
            self._relay.close()

    def _release_due(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation and self._on_since is not None:
                try:
                    self._switch_off()
                except AmplifierError:
                    log.exception("could not switch the amplifier off")

    def _cancel_timer(self) -> None:
        """Forget any pending release (the caller holds the lock)."""
        self._generation += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _switch_off(self) -> None:
        self._on_since = None
        self._switch(on=False)

    def _switch(self, *, on: bool) -> None:
        assert self._relay is not None
        try:
            if on:
                self._relay.on()
            else:
                self._relay.off()
        except GPIOZeroError as exc:
            raise AmplifierError(
                f"amplifier relay could not switch {'on' if on else 'off'}: {exc}"
            ) from exc
        log.debug("amplifier %s", "on" if on else "off")
