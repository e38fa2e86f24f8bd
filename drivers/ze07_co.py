"""Winsen ZE07-CO electrochemical carbon monoxide module on a UART (config type ``ze07_co``).

Wiring (module pin → Pi or USB-UART adapter), 3.3 V logic, 9600 baud 8N1::

    ZE07 pin 1 Vin (5 V)  ── 5 V           ZE07 pin 3 GND ── GND
    ZE07 pin 5 TXD        ── RXD (GPIO15 on the Pi header, or the adapter's RX)
    ZE07 pin 4 RXD        ── TXD (GPIO14, or the adapter's TX; only needed for Q&A mode)

Every frame is 9 bytes; ``cs`` = (~(byte1 + … + byte7) + 1) & 0xFF.

Active upload (the default after power-up, one frame per second)::

    byte  0     1     2     3     4     5     6      7      8
         FF    04    03    01    hi    lo   fr_hi  fr_lo   cs
       start  CO   ppm  1 decimal  concentration  full range
    ppm = (hi·256 + lo) × 0.1        e.g. FF 04 03 01 00 7B 13 88 E2 → 12.3 ppm

Question & answer (the driver sends a query every ``poll_s``)::

    query  FF 01 86 00 00 00 00 00 79
    reply  FF 86 hi lo 00 00 00 00 cs     ppm = (hi·256 + lo) × 0.1

Mode switch (sent by the driver each time it opens the port):
Q&A ``FF 01 78 41 00 00 00 00 46``, active upload ``FF 01 78 40 00 00 00 00 47``.

The parser resynchronises on the ``FF`` start byte: bytes before a start byte are garbage, a
9-byte frame with a known header and a wrong checksum is a bad frame, and the search then resumes
one byte after its ``FF`` so that a real frame hiding inside a broken one is still found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import serial

from drivers.base import Clock, Emit
from drivers.serial_link import SerialDriver

FRAME_LEN = 9
START = 0xFF
ACTIVE_HEADER = bytes((0xFF, 0x04, 0x03, 0x01))
QA_HEADER = bytes((0xFF, 0x86))
QUERY = bytes.fromhex("FF0186000000000079")
SWITCH_TO_QA = bytes.fromhex("FF0178410000000046")
SWITCH_TO_ACTIVE = bytes.fromhex("FF0178400000000047")
QUANTITY = "co_ppm"


def checksum(frame: bytes) -> int:
    """The ZE07 checksum of a 9-byte frame (computed over bytes 1..7)."""
    return (~sum(frame[1:8]) + 1) & 0xFF


def make_frame(body: bytes) -> bytes:
    """Bytes 0..7 plus their checksum: a complete frame (used by the simulator and tests)."""
    if len(body) != FRAME_LEN - 1:
        raise ValueError("a ZE07 frame body is 8 bytes")
    return body + bytes((checksum(body + b"\0"),))


def active_frame(ppm_tenths: int, full_range_tenths: int = 5000) -> bytes:
    """An active-upload frame carrying `ppm_tenths` (0..65535)."""
    return make_frame(
        ACTIVE_HEADER + ppm_tenths.to_bytes(2, "big") + full_range_tenths.to_bytes(2, "big")
    )


def qa_reply(ppm_tenths: int) -> bytes:
    """A Q&A reply frame carrying `ppm_tenths` (0..65535)."""
    return make_frame(QA_HEADER + ppm_tenths.to_bytes(2, "big") + bytes(4))


@dataclass(frozen=True, slots=True)
class Ze07Frame:
    """A frame that passed every check."""

    kind: Literal["active", "qa"]
    ppm: float
    raw: bytes


def _kind(candidate: bytes) -> Literal["active", "qa"] | None:
    if candidate.startswith(ACTIVE_HEADER):
        return "active"
    if candidate.startswith(QA_HEADER):
        return "qa"
    return None


class Ze07Parser:
    """Turns a byte stream (in chunks of any size) into `Ze07Frame`s; never raises on input.

    Counters: ``frames`` (valid), ``bad_frames`` (known header, wrong checksum) and
    ``garbage_bytes`` (skipped while looking for a frame start).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.frames = 0
        self.bad_frames = 0
        self.garbage_bytes = 0

    def feed(self, data: bytes) -> list[Ze07Frame]:
        self._buf += data
        out: list[Ze07Frame] = []
        while True:
            start = self._buf.find(START)
            if start < 0:
                self.garbage_bytes += len(self._buf)
                self._buf.clear()
                return out
            if start:
                self.garbage_bytes += start
                del self._buf[:start]
            if not self._header_possible():
                self.garbage_bytes += 1
                del self._buf[:1]
                continue
            if len(self._buf) < FRAME_LEN:
                return out
            frame = self._take_frame()
            if frame is not None:
                out.append(frame)

    def _header_possible(self) -> bool:
        """Could the buffer (starting with FF) still begin a frame, given the bytes seen so far?"""
        head = bytes(self._buf[:4])
        return ACTIVE_HEADER.startswith(head) or head.startswith(QA_HEADER) or head == b"\xff"

    def _take_frame(self) -> Ze07Frame | None:
        candidate = bytes(self._buf[:FRAME_LEN])
        kind = _kind(candidate)
        if kind is None or checksum(candidate) != candidate[8]:
            self.bad_frames += 1
            del self._buf[:1]
            return None
        del self._buf[:FRAME_LEN]
        self.frames += 1
        tenths = (
            candidate[4] * 256 + candidate[5]
            if kind == "active"
            else candidate[2] * 256 + candidate[3]
        )
        return Ze07Frame(kind, round(tenths * 0.1, 1), candidate)


class Ze07CoDriver(SerialDriver):
    """A ZE07-CO on a serial port, in active-upload or Q&A mode (see the module docstring)."""

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        port: str,
        baud: int = 9600,
        mode: str = "active",
        poll_s: float = 1.0,
        timeout_s: float = 10,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name, emit, port=port, baud=baud, timeout_s=timeout_s, clock=clock)
        if mode not in ("active", "qa"):
            raise ValueError(f'mode must be "active" or "qa", not {mode!r}')
        if poll_s <= 0:
            raise ValueError(f"poll_s must be above 0, not {poll_s}")
        self.mode = mode
        self.poll_s = float(poll_s)
        self._parser = Ze07Parser()
        self._next_query = 0.0

    def _on_open(self, port: serial.Serial) -> None:
        port.write(SWITCH_TO_QA if self.mode == "qa" else SWITCH_TO_ACTIVE)
        self._next_query = self._clock.monotonic()

    def _poll(self, port: serial.Serial, now: float) -> None:
        if self.mode != "qa" or now < self._next_query:
            return
        port.write(QUERY)
        self._count("queries")
        self._next_query = now + self.poll_s

    def _feed(self, data: bytes) -> None:
        parser = self._parser
        bad, garbage = parser.bad_frames, parser.garbage_bytes
        frames = parser.feed(data)
        self._garbage(parser.garbage_bytes - garbage)
        if parser.bad_frames > bad:
            self._bad_frame(parser.bad_frames - bad)
        for frame in frames:
            self._good_frame()
            self._report(QUANTITY, frame.ppm)
