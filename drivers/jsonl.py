"""A microcontroller that writes one JSON object per line on a UART (config type ``jsonl``).

For home-made sensor nodes (an ESP32 or an Arduino with a DHT22, a battery monitor, a float
switch …). Wiring: the node's TX to the Pi's RX (GPIO15) or a USB-UART adapter, GND to GND,
3.3 V logic; 115200 baud 8N1 by default.

Frame: one UTF-8 JSON object terminated by ``\\n`` (a ``\\r`` before it is ignored), at most
`MAX_LINE` bytes::

    {"q": "temperature_c", "v": 21.5}
    {"q": "water_present", "v": false}
    {"q": "battery_v", "v": 3.71, "flags": ["estimated"]}

- ``q``: the quantity, ``[a-z][a-z0-9_]{0,63}``; docs/protocol.md §4 names are checked (boolean
  quantities need ``true``/``false``, numeric ones a finite number), others are passed through.
- ``v``: a finite number or a boolean.
- ``flags`` (optional): only ``"estimated"`` is meaningful from a node.
- Other keys are ignored, so newer firmware can add fields. Blank lines are ignored.

Anything else (not UTF-8, not JSON, not an object, a bad ``q`` or ``v``, a line over the limit)
is a bad frame: counted, skipped, and a run of them is a ``bad_frames`` fault. When garbage
precedes a good object on the same line, the garbage counts as a bad frame and the object
after it is still read (resynchronisation on ``{``). The node's own
timestamps are not trusted; the reading gets the station's time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from drivers.base import (
    BOOLEAN_QUANTITIES,
    FLAG_ESTIMATED,
    PHYSICAL_RANGE,
    QUANTITY_PATTERN,
    Clock,
    Emit,
)
from drivers.serial_link import SerialDriver

MAX_LINE = 1024
#: How many `{` inside a bad line are tried as the start of a good object glued after garbage.
RESYNC_TRIES = 4
NODE_FLAGS = frozenset({FLAG_ESTIMATED})


@dataclass(frozen=True, slots=True)
class JsonlValue:
    """A line that passed every check."""

    quantity: str
    value: float | bool
    flags: tuple[str, ...] = ()


class BadLine(ValueError):
    """Why a line was not a reading."""


def parse_line(line: bytes) -> JsonlValue:
    """One line (without its newline) as a reading; `BadLine` says what was wrong."""
    try:
        obj = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        if isinstance(exc, BadLine):
            raise
        raise BadLine(f"not a JSON line: {exc}") from None
    if not isinstance(obj, dict):
        raise BadLine("not a JSON object")
    quantity, value = obj.get("q"), obj.get("v")
    if not isinstance(quantity, str) or not QUANTITY_PATTERN.fullmatch(quantity):
        raise BadLine(f"bad quantity {quantity!r}")
    return JsonlValue(quantity, _value(quantity, value), _flags(obj.get("flags", [])))


def _no_constant(name: str) -> None:
    raise BadLine(f"{name} is not a number")


def _value(quantity: str, value: object) -> float | bool:
    if quantity in BOOLEAN_QUANTITIES:
        if not isinstance(value, bool):
            raise BadLine(f"{quantity} needs true or false, not {value!r}")
        return value
    if isinstance(value, bool):
        if quantity in PHYSICAL_RANGE:
            raise BadLine(f"{quantity} needs a number, not {value!r}")
        return value
    if not isinstance(value, int | float):
        raise BadLine(f"bad value {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise BadLine("value too large") from None
    if not math.isfinite(number):
        raise BadLine(f"bad value {value!r}")
    return number


def _flags(flags: object) -> tuple[str, ...]:
    if not isinstance(flags, list) or not all(f in NODE_FLAGS for f in flags):
        raise BadLine(f"flags must be a list of {sorted(NODE_FLAGS)}, not {flags!r}")
    return tuple(dict.fromkeys(flags))


class JsonlParser:
    """Splits a byte stream into lines and parses them; never raises on input.

    `feed` returns the good values; ``bad_lines`` counts the rest and ``last_error`` says why the
    latest one was bad. An over-long line is dropped up to its newline and counts once.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False
        self.lines = 0
        self.bad_lines = 0
        self.last_error = ""

    def feed(self, data: bytes) -> list[JsonlValue]:
        out: list[JsonlValue] = []
        self._buf += data
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                self._limit_partial()
                return out
            line = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            value = self._line(line)
            if value is not None:
                out.append(value)

    def _limit_partial(self) -> None:
        if len(self._buf) > self.max_line:
            if not self._skipping:
                self._bad(f"line longer than {self.max_line} bytes")
            self._skipping = True
            self._buf.clear()

    def _line(self, line: bytes) -> JsonlValue | None:
        if not line.strip():
            return None
        if len(line) > self.max_line:
            self._bad(f"line longer than {self.max_line} bytes")
            return None
        value: JsonlValue | None
        try:
            value = parse_line(line)
        except BadLine as exc:
            self._bad(str(exc))
            value = self._resync(line)
        if value is not None:
            self.lines += 1
        return value

    def _resync(self, line: bytes) -> JsonlValue | None:
        """A good object glued to garbage before it (line noise, a node rebooting mid-line):
        the garbage is counted as a bad line, and the object after it still counts."""
        start = line.find(b"{", 1)
        for _ in range(RESYNC_TRIES):
            if start < 0:
                return None
            try:
                return parse_line(line[start:])
            except BadLine:
                start = line.find(b"{", start + 1)
        return None

    def _bad(self, why: str) -> None:
        self.bad_lines += 1
        self.last_error = why


class JsonlDriver(SerialDriver):
    """A JSON-lines sensor node on a serial port (see the module docstring)."""

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        port: str,
        baud: int = 115200,
        timeout_s: float = 30,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name, emit, port=port, baud=baud, timeout_s=timeout_s, clock=clock)
        self._parser = JsonlParser()

    def _feed(self, data: bytes) -> None:
        parser = self._parser
        bad = parser.bad_lines
        values = parser.feed(data)
        if parser.bad_lines > bad:
            self._bad_frame(parser.bad_lines - bad)
        for item in values:
            self._good_frame()
            self._report(item.quantity, item.value, item.flags)
