"""RS-485 Modbus RTU water level transmitter (config type ``modbus_level``).

The common Chinese submersible / radar level transmitters (投入式液位变送器, 485 output) answer
Modbus RTU function 0x03 (read holding registers). Typical map, 0-based protocol addresses as
the datasheets print them::

    0x0000  unit (slave) address        0x0003  decimal places (0..3)
    0x0001  baud rate code              0x0004  measured value, int16
    0x0002  unit code (cm / m / MPa …)

    level = raw / 10**decimals × scale + offset        (metres)

Wiring: transmitter A+ → adapter A/D+, B- → B/D-, 12–24 V DC supply to the transmitter's
power pair, the adapter's GND to the supply's 0 V. Many transmitters share one bus by ``unit``.

Request and reply on the wire (unit 1, reading 0x0003..0x0004)::

    request  01 03 00 03 00 02 crc_lo crc_hi
    reply    01 03 04 dd_hi dd_lo vv_hi vv_lo crc_lo crc_hi

The driver polls every ``poll_s`` with minimalmodbus on pyserial, tries ``retries`` more times when
a reply is missing or broken, and counts CRC errors (``crc_errors``), missing replies
(``no_reply``) and exception replies (``device_exceptions``). Two adjacent registers are read
in one request. No good reply for ``timeout_s`` is a ``no_data`` fault (``bad_frames`` when replies
came but were broken, ``device_error`` when the transmitter answered with Modbus exceptions).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import minimalmodbus
import serial

from drivers.base import (
    REASON_BAD_FRAMES,
    REASON_DEVICE_ERROR,
    REASON_NO_DATA,
    Clock,
    DoublingBackoff,
    Driver,
    Emit,
)

log = logging.getLogger(__name__)

QUANTITY = "water_level_m"
#: How long to wait for a reply; at 9600 baud a reply takes ~10 ms plus the device's turnaround.
REPLY_TIMEOUT_S = 0.5
#: Decimal places a transmitter may report; anything else is a broken reply.
MAX_DECIMALS = 6
#: This many failed polls in a row with broken replies is a ``bad_frames`` fault.
BAD_POLL_RUN = 3


def to_int16(raw: int) -> int:
    """A register's 16 bits as a two's complement number."""
    return raw - 0x10000 if raw & 0x8000 else raw


@dataclass(frozen=True, slots=True)
class LevelMap:
    """Where the value and the optional decimals live, and how to turn them into metres."""

    register: int
    decimals_register: int | None
    scale: float
    offset: float

    def block(self) -> list[tuple[int, int]]:
        """(start, count) requests that cover the registers needed, adjacent ones merged."""
        regs = [self.register]
        if self.decimals_register is not None:
            regs = sorted((self.register, self.decimals_register))
        if len(regs) == 2 and regs[1] - regs[0] == 1:
            return [(regs[0], 2)]
        return [(r, 1) for r in regs]

    def value(self, registers: dict[int, int]) -> float:
        """The level from raw register contents; ValueError for impossible decimals."""
        decimals = 0
        if self.decimals_register is not None:
            decimals = registers[self.decimals_register]
            if decimals > MAX_DECIMALS:
                raise ValueError(f"decimal places register holds {decimals}")
        raw = to_int16(registers[self.register])
        return round(raw / 10.0**decimals * self.scale + self.offset, 9)


class ModbusLevelDriver(Driver):
    """Polls one Modbus RTU level transmitter (see the module docstring)."""

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        port: str,
        register: int,
        baud: int = 9600,
        unit: int = 1,
        decimals_register: int | None = None,
        scale: float = 1.0,
        offset: float = 0.0,
        poll_s: float = 5,
        timeout_s: float = 30,
        retries: int = 2,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name, emit, clock=clock)
        _check(port, baud, unit, register, decimals_register, poll_s, timeout_s, retries)
        self.port = port
        self.baud = baud
        self.unit = unit
        self.map = LevelMap(register, decimals_register, float(scale), float(offset))
        self.poll_s = float(poll_s)
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self._last_good = self._clock.monotonic()
        self._failure = REASON_NO_DATA
        self._bad_polls = 0
        self._backoff = DoublingBackoff()

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        self._keep_port_open(self.port, self._open, self._poll_forever, _close, self._backoff)

    def _open(self) -> minimalmodbus.Instrument | None:
        try:
            port = serial.Serial(self.port, self.baud, timeout=REPLY_TIMEOUT_S, write_timeout=1.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._count("open_failures")
            self._log_open_failure(self.port, exc)
            return None
        self._count("opens")
        if self.stats["opens"] > 1:
            self._count("reopen_count")
        # Hand minimalmodbus our own port object: its module-level port cache would otherwise
        # keep a dead port after a USB adapter is unplugged and replugged.
        instrument = minimalmodbus.Instrument(port, self.unit)
        self._last_good = max(self._last_good, self._clock.monotonic())
        return instrument

    def _poll_forever(self, instrument: minimalmodbus.Instrument) -> None:
        while not self.stopping:
            started = self._clock.monotonic()
            self._poll_once(instrument)
            self._watchdog(self._clock.monotonic())
            if self._wait(self.poll_s - (self._clock.monotonic() - started)):
                return

    def _poll_once(self, instrument: minimalmodbus.Instrument) -> None:
        for _attempt in range(1 + self.retries):
            if self.stopping:
                return
            registers = self._read(instrument)
            if registers is None:
                continue
            try:
                value = self.map.value(registers)
            except ValueError as exc:
                log.debug("sensor %s: %s", self.name, exc)
                self._count("bad_frames")
                self._failure = REASON_BAD_FRAMES
                continue
            self._good(value)
            return
        self._count("failed_polls")
        self._bad_polls += 1
        if self._bad_polls >= BAD_POLL_RUN and self._failure != REASON_NO_DATA:
            self._fault(self._failure)

    def _read(self, instrument: minimalmodbus.Instrument) -> dict[int, int] | None:
        """The registers of one request round; None (and counted) when a reply fails."""
        registers: dict[int, int] = {}
        try:
            for start, count in self.map.block():
                values = instrument.read_registers(start, count, functioncode=3)
                registers.update(zip(range(start, start + count), values, strict=True))
        except minimalmodbus.NoResponseError:
            self._count("no_reply")
            return None
        except minimalmodbus.SlaveReportedException as exc:
            self._count("device_exceptions")
            self._failure = REASON_DEVICE_ERROR
            log.debug("sensor %s: transmitter answered with an exception: %s", self.name, exc)
            return None
        except minimalmodbus.InvalidResponseError as exc:
            self._count("crc_errors" if "Checksum" in str(exc) else "bad_frames")
            self._failure = REASON_BAD_FRAMES
            return None
        except minimalmodbus.ModbusException as exc:
            self._count("bad_frames")
            self._failure = REASON_BAD_FRAMES
            log.debug("sensor %s: %s", self.name, exc)
            return None
        return registers

    def _good(self, value: float) -> None:
        self._count("frames_ok")
        self._bad_polls = 0
        self._failure = REASON_NO_DATA
        self._last_good = self._clock.monotonic()
        self._backoff.reset()
        self._report(QUANTITY, value)

    def _watchdog(self, now: float) -> None:
        if now - self._last_good >= self.timeout_s:
            self._fault(self._failure)


def _close(instrument: minimalmodbus.Instrument) -> None:
    port = instrument.serial
    if port is not None:
        with contextlib.suppress(serial.SerialException, OSError):
            port.close()


def _check(
    port: str,
    baud: int,
    unit: int,
    register: int,
    decimals_register: int | None,
    poll_s: float,
    timeout_s: float,
    retries: int,
) -> None:
    """Reject parameters no transmitter could work with, naming the key."""
    if not port:
        raise ValueError("port must name a serial device, e.g. /dev/ttyAMA0")
    if baud <= 0:
        raise ValueError(f"baud must be a positive number, not {baud}")
    if not 1 <= unit <= 247:
        raise ValueError(f"unit must be a Modbus address 1..247, not {unit}")
    for key, reg in (("register", register), ("decimals_register", decimals_register)):
        if reg is not None and not 0 <= reg <= 0xFFFF:
            raise ValueError(f"{key} must be a protocol address 0..65535, not {reg}")
    if decimals_register == register:
        raise ValueError("decimals_register and register must differ")
    if poll_s <= 0 or timeout_s <= 0:
        raise ValueError("poll_s and timeout_s must be above 0")
    if not 0 <= retries <= 10:
        raise ValueError(f"retries must be 0..10, not {retries}")
