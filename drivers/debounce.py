"""Contact debouncing in our own code, driven by timestamps so a test can feed it any timing.

gpiozero's ``bounce_time`` is not honoured by its ``MockFactory`` (so no test could see it) and,
on real pins, can leave a device stuck in the wrong state when the last bounce is swallowed. This
debouncer reports the first edge of a change at once (a smoke relay closing must reach the alarm
rules without waiting out the bounce), ignores edges for ``window_s`` after every accepted change,
and at the end of that window settles on the level the line actually has, so the final state is
never lost::

    raw line   ‾‾‾|_|‾|______________|‾|_|‾‾‾‾‾‾‾‾‾
    accepted   ‾‾‾|__________________|‾‾‾‾‾‾‾‾‾‾‾‾‾      (one change per press and release)
                  <-window->         <-window->

The class is pure: callers pass the time (`Clock.monotonic()` seconds) and hold any lock needed.
"""

from __future__ import annotations


class Debouncer:
    """Turns raw edges of a two-state line into debounced state changes."""

    def __init__(self, window_s: float, state: bool) -> None:
        if window_s < 0:
            raise ValueError(f"debounce_s must be 0 or more, not {window_s}")
        self.window_s = float(window_s)
        #: The accepted (debounced) state.
        self.state = state
        self._raw = state
        self._changed_at = float("-inf")
        self._pending = False

    def edge(self, raw: bool, now: float) -> list[bool]:
        """The line now reads `raw`; returns the accepted changes this causes (0, 1 or 2)."""
        out = self._settle_at_window_end(now)
        self._raw = raw
        if now - self._changed_at >= self.window_s:
            self._pending = False
            if raw != self.state:
                self._accept(raw, now)
                out.append(raw)
        else:
            self._pending = True
        return out

    def settle(self, raw: bool, now: float) -> list[bool]:
        """Called once the window may be over, with the level the line has `now`.

        A change found this way is dated `now`, not the window's end: the level may have been
        read just after an edge whose callback has not run yet, and the bounce that follows that
        edge must still fall inside a fresh window.
        """
        if not self._pending or now < self._changed_at + self.window_s:
            return []
        self._pending = False
        self._raw = raw
        if raw == self.state:
            return []
        self._accept(raw, now)
        return [raw]

    def deadline(self) -> float | None:
        """When `settle` has something to decide, or None when nothing is pending."""
        return self._changed_at + self.window_s if self._pending else None

    def _settle_at_window_end(self, now: float) -> list[bool]:
        end = self._changed_at + self.window_s
        if not self._pending or now < end:
            return []
        self._pending = False
        if self._raw == self.state:
            return []
        self._accept(self._raw, end)
        return [self._raw]

    def _accept(self, state: bool, at: float) -> None:
        self.state = state
        self._changed_at = at
