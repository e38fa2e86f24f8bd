"""The far ends of the driver tests: device simulators, a Modbus transmitter.

Everything here puts real bytes on a real (pseudo-)terminal (the ports are harness/serial_ports.py):
`PeriodicWriter` is a device in active-upload mode, `QaResponder` answers ZE07 queries the way
the module does, and `ModbusTransmitter` is a pymodbus RTU server on one end of a socat pty pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

from drivers.base import Health, Reading
from drivers.ze07_co import QUERY, qa_reply
from harness.serial_ports import PtyPort

Item = Reading | Health


class Collector:
    """A thread-safe `Emit` that remembers everything, with waits for what a test expects."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self._cond = threading.Condition()

    def emit(self, item: Item) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def snapshot(self) -> list[Item]:
        with self._cond:
            return list(self.items)

    def readings(self, start: int = 0) -> list[Reading]:
        return [i for i in self.snapshot()[start:] if isinstance(i, Reading)]

    def values(self, start: int = 0) -> list[float | bool]:
        return [r.value for r in self.readings(start)]

    def health(self, start: int = 0) -> list[Health]:
        return [i for i in self.snapshot()[start:] if isinstance(i, Health)]

    def mark(self) -> int:
        """An index to pass as `start` to look only at what comes later."""
        with self._cond:
            return len(self.items)

    def wait_for(
        self, predicate: Callable[[list[Item]], bool], timeout: float = 5.0, what: str = ""
    ) -> list[Item]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what or predicate}: {self.items}")
                self._cond.wait(left)
            return list(self.items)

    def wait_readings(self, n: int, start: int = 0, timeout: float = 5.0) -> list[Reading]:
        self.wait_for(
            lambda items: sum(isinstance(i, Reading) for i in items[start:]) >= n,
            timeout,
            f"{n} readings",
        )
        return self.readings(start)

    def wait_health(self, reason: str, start: int = 0, timeout: float = 5.0) -> Health:
        """Wait for a Health with `reason` ("" for ok) emitted at or after `start`."""

        def seen(items: list[Item]) -> bool:
            return any(isinstance(i, Health) and i.reason == reason for i in items[start:])

        self.wait_for(seen, timeout, f"health {reason or 'ok'!r}")
        return next(h for h in self.health(start) if h.reason == reason)


class FakeClock:
    """A `Clock` that moves only when a test says so."""

    def __init__(self, monotonic: float = 1000.0, time_ms: int = 1_767_225_600_000) -> None:
        self._mono = monotonic
        self._ms = time_ms
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def time_ms(self) -> int:
        with self._lock:
            return self._ms

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._mono += seconds
            self._ms += round(seconds * 1000)


class PeriodicWriter:
    """A device in active-upload mode: writes `make()` to the port every `period_s` seconds.

    For end-to-end runs, e.g. ``PeriodicWriter(port, lambda: active_frame(123), 1.0)`` is a
    ZE07-CO, ``PeriodicWriter(port, lambda: b'{"q": "battery_v", "v": 3.7}\\n', 1.0)`` a node.
    Writes to an unplugged port are skipped.
    """

    def __init__(self, port: PtyPort, make: Callable[[], bytes], period_s: float) -> None:
        self.port = port
        self.make = make
        self.period_s = period_s
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        while not self._stop.wait(self.period_s):
            with contextlib.suppress(OSError):
                self.port.write(self.make())
                self.written += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1)


class QaResponder:
    """A ZE07-CO in Q&A mode: answers every query with the current concentration."""

    def __init__(self, port: PtyPort, tenths: int) -> None:
        self.port = port
        self.tenths = tenths
        self.received = bytearray()
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        master = self.port.master
        while not self._stop.is_set():
            if not select.select([master], [], [], 0.05)[0]:
                continue
            self.received += os.read(master, 4096)
            while QUERY in self.received:
                del self.received[: self.received.index(QUERY) + len(QUERY)]
                self.queries += 1
                os.write(master, qa_reply(self.tenths))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1)


class ModbusTransmitter:
    """A level transmitter: a pymodbus RTU server (its own thread and event loop) on `port`.

    `registers` maps 0-based protocol addresses to 16-bit values. `corrupt_replies(n)` breaks
    the CRC of the next n replies; `requests` keeps every request frame as received.
    """

    def __init__(self, port: Path, unit: int, registers: dict[int, int]) -> None:
        self.port = port
        self.unit = unit
        self.registers = registers
        self.requests: list[bytes] = []
        self._corrupt = 0
        self._loop = asyncio.new_event_loop()
        self._server: ModbusSerialServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> ModbusTransmitter:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the Modbus server did not start")
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._listen())
        self._ready.set()
        self._loop.run_forever()

    async def _listen(self) -> None:
        top = max(self.registers) + 1
        values = [self.registers.get(a, 0) for a in range(top)]
        device = SimDevice(
            self.unit, simdata=[SimData(0, values=values, datatype=DataType.REGISTERS)]
        )
        self._server = ModbusSerialServer(
            device,
            port=str(self.port),
            baudrate=9600,
            trace_packet=self._trace,
            ignore_missing_devices=True,  # other units on a real bus stay silent
        )
        await self._server.serve_forever(background=True)

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self.requests.append(bytes(data))
            return data
        if self._corrupt > 0:
            self._corrupt -= 1
            return data[:-1] + bytes(((data[-1] ^ 0x5A),))
        return data

    def corrupt_replies(self, n: int) -> None:
        self._corrupt = n

    def set_register(self, address: int, value: int) -> None:
        assert self._server is not None
        server = self._server
        future = asyncio.run_coroutine_threadsafe(
            server.async_setValues(self.unit, 6, address, [value & 0xFFFF]), self._loop
        )
        future.result(5)

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
