"""The far ends of the driver tests: pseudo-terminals, device simulators, a Modbus transmitter.

Everything here puts real bytes on a real (pseudo-)terminal: a `PtyPort` is a pty pair whose
slave end is reached through a symlink that can be removed and recreated (a USB adapter being
unplugged and plugged back), `QaResponder` answers ZE07 queries the way the module does, and
`ModbusTransmitter` is a pymodbus RTU server on one end of a socat pty pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import subprocess
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

from drivers.base import Health, Reading
from drivers.ze07_co import QUERY, qa_reply

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


class PtyPort:
    """A pty pair; the driver opens `path`, a symlink to the slave, the test uses the master."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self._slave = -1
        self.plug()

    @property
    def path(self) -> str:
        return str(self.link)

    def plug(self) -> None:
        """A fresh pty behind the link (a new device node, as after replugging a USB adapter)."""
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.symlink(os.ttyname(self._slave), self.link)

    def unplug(self) -> None:
        """The device node disappears and the far end hangs up."""
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master = self._slave = -1

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read(self, timeout: float = 1.0, want: int = 1) -> bytes:
        """Bytes the driver wrote, waiting up to `timeout` for at least `want` of them."""
        deadline = time.monotonic() + timeout
        got = b""
        while len(got) < want:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                break
            got += os.read(self.master, 4096)
        return got

    def close(self) -> None:
        self.unplug()


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


class SocatPair:
    """Two named pty ends joined by socat: `server` for the device, `client` for the driver."""

    def __init__(self, folder: Path) -> None:
        self.server = folder / "rs485-device"
        self.client = folder / "ttyRS485"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                "socat",
                f"pty,raw,echo=0,link={self.server}",
                f"pty,raw,echo=0,link={self.client}",
            ],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not (self.server.exists() and self.client.exists()):
            if time.monotonic() > deadline:
                raise RuntimeError("socat did not create its pty links")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)
            self._proc = None
        deadline = time.monotonic() + 2
        while (self.server.exists() or self.client.exists()) and time.monotonic() < deadline:
            time.sleep(0.005)


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
