"""What comes down a serial line in a village: noise, broken frames, silence — and a counting node.

Why this module exists: a sensor's serial line in a village is never clean, and the service must
neither crash nor raise a false alarm on what comes down it. `NoisyLine` drives the far end of a
sensor's port (a `harness.serial_ports.PtyPort` master, or the device end of a socat pair) with
a seeded, hostile mixture of segments:

* ``noise``: random bytes (EMI on an unshielded RS-485 run, a wrong baud rate);
* ``partial``: the first 1–8 bytes of a genuine frame, then nothing (a module reset mid-frame);
* ``silence``: nothing for a while (an unplugged sensor, a dead module) — long enough to raise
  a ``no_data`` fault;
* ``frame``: a genuine frame of a harmless value (so the sensor recovers and faults end).

`Replugger` pulls a pty-backed port out now and then and plugs a fresh one back (a loose USB
adapter), while a `NoisyLine` keeps writing to whatever is plugged in.

Everything written is kept (`written`), so a test can replay the exact byte stream through the
driver's own parser afterwards (`spurious_ze07_frames`) and tell a checksum collision — random
bytes that happen to form a valid 9-byte ZE07 frame, which an 8-bit checksum lets through about
once in 256 broken frames — from a bug.

`CountingNode` is a JSON-lines node that writes ``{"q": "water_level_m", "v": N}`` with N = 0, 1,
2, … at a steady rate, so the centre can tell exactly which readings arrived.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.ze07_co import Ze07Parser, active_frame
from harness.serial_ports import PtyPort

#: Harmless values (well below any alarm threshold) for the genuine frames.
ZE07_GOOD_TENTHS = 123  # 12.3 ppm
JSONL_GOOD = b'{"q": "temperature_c", "v": 21.5}\n'


@dataclass
class LineStats:
    """What a `NoisyLine` has written, by kind of segment."""

    segments: dict[str, int] = field(
        default_factory=lambda: {"noise": 0, "partial": 0, "silence": 0, "frame": 0}
    )
    bytes_written: int = 0


class NoisyLine:
    """Writes a seeded mixture of noise, partial frames, silences and good frames to `fd`."""

    def __init__(
        self,
        fd: int,
        good_frame: bytes,
        seed: int,
        *,
        silence_s: tuple[float, float] = (0.5, 4.0),
        noise_bytes: tuple[int, int] = (1, 300),
        weights: dict[str, float] | None = None,
        write: Callable[[bytes], None] | None = None,
    ) -> None:
        self.fd = fd
        self.good_frame = good_frame
        self.rng = random.Random(seed)
        self.silence_s = silence_s
        self.noise_bytes = noise_bytes
        self.weights = weights or {"noise": 4, "partial": 3, "silence": 1, "frame": 2}
        self.written = bytearray()
        self.stats = LineStats()
        self._write = write or (lambda data: os.write(self.fd, data) and None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="noisy-line", daemon=True)

    def start(self) -> NoisyLine:
        self._thread.start()
        return self

    def _segment(self) -> tuple[str, bytes, float]:
        """The next segment: its kind, its bytes and the pause after it."""
        kinds = list(self.weights)
        kind = self.rng.choices(kinds, [self.weights[k] for k in kinds])[0]
        if kind == "noise":
            data = self.rng.randbytes(self.rng.randint(*self.noise_bytes))
            return kind, data, self.rng.uniform(0.0, 0.05)
        if kind == "partial":
            cut = self.rng.randint(1, len(self.good_frame) - 1)
            return kind, self.good_frame[:cut], self.rng.uniform(0.05, 0.5)
        if kind == "silence":
            return kind, b"", self.rng.uniform(*self.silence_s)
        return kind, self.good_frame, self.rng.uniform(0.05, 0.3)

    def _run(self) -> None:
        while not self._stop.is_set():
            kind, data, pause = self._segment()
            if data:
                try:
                    self._write(data)
                except OSError:
                    if self._stop.wait(0.1):
                        return
                    continue
                self.written += data
                self.stats.bytes_written += len(data)
            self.stats.segments[kind] += 1
            self._stop.wait(pause)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Replugger:
    """Unplugs a `harness.serial_ports.PtyPort` now and then and plugs it back (a loose USB plug).

    `write` is a `NoisyLine` write callback that always goes to the current master, and never to
    a closed (and possibly reused) descriptor.
    """

    def __init__(
        self, port: PtyPort, seed: int, every_s: tuple[float, float], out_s: tuple[float, float]
    ) -> None:
        self.port = port
        self.rng = random.Random(seed)
        self.every_s = every_s
        self.out_s = out_s
        self.unplugs = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replugger", daemon=True)

    def start(self) -> Replugger:
        self._thread.start()
        return self

    def write(self, data: bytes) -> None:
        with self._lock:
            if self.port.master < 0:
                raise OSError("unplugged")
            os.write(self.port.master, data)

    def _run(self) -> None:
        while not self._stop.wait(self.rng.uniform(*self.every_s)):
            with self._lock:
                self.port.unplug()
                self.unplugs += 1
            self._stop.wait(self.rng.uniform(*self.out_s))
            with self._lock:
                self.port.plug()

    def stop(self) -> None:
        """Stop cycling and leave the port plugged in."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(5)
        with self._lock:
            if self.port.master < 0:
                self.port.plug()


def spurious_ze07_frames(stream: bytes) -> list[float]:
    """ppm values of valid frames in `stream` that are not the genuine harmless frame."""
    parser = Ze07Parser()
    frames = parser.feed(stream)
    return [f.ppm for f in frames if f.raw != active_frame(ZE07_GOOD_TENTHS)]


def modbus_crc(data: bytes) -> bytes:
    """The Modbus RTU CRC-16 of `data`, low byte first, as it goes on the wire."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes((crc & 0xFF, crc >> 8))


def modbus_reply(unit: int, registers: list[int]) -> bytes:
    """A function 0x03 reply carrying `registers`."""
    body = bytes((unit, 3, 2 * len(registers))) + b"".join(r.to_bytes(2, "big") for r in registers)
    return body + modbus_crc(body)


class NoisyTransmitter:
    """A Modbus RTU level transmitter on a bad bus: answers each request in a seeded random way.

    Per request: a correct reply (decimals 2, value 123: 1.23 m), random bytes, a reply cut
    short, or no reply at all; and now and then random bytes between requests. Reads the
    requests from `fd` (the device end of a socat pair) so the bus never backs up.
    """

    def __init__(self, fd: int, seed: int, unit: int = 1) -> None:
        self.fd = fd
        self.unit = unit
        self.rng = random.Random(seed)
        self.stats = LineStats(segments={"reply": 0, "noise": 0, "partial": 0, "silence": 0})
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="noisy-transmitter", daemon=True)

    def start(self) -> NoisyTransmitter:
        self._thread.start()
        return self

    def _answer(self) -> bytes:
        good = modbus_reply(self.unit, [2, 123])
        kind = self.rng.choices(["reply", "noise", "partial", "silence"], [3, 3, 2, 2])[0]
        self.stats.segments[kind] += 1
        if kind == "reply":
            return good
        if kind == "noise":
            return self.rng.randbytes(self.rng.randint(1, 40))
        if kind == "partial":
            return good[: self.rng.randint(1, len(good) - 1)]
        return b""

    def _run(self) -> None:
        import select

        while not self._stop.is_set():
            ready = select.select([self.fd], [], [], 0.05)[0]
            try:
                if ready and os.read(self.fd, 4096):
                    self.requests += 1
                    answer = self._answer()
                elif self.rng.random() < 0.05:
                    answer = self.rng.randbytes(self.rng.randint(1, 60))
                    self.stats.segments["noise"] += 1
                else:
                    continue
                if answer:
                    os.write(self.fd, answer)
                    self.stats.bytes_written += len(answer)
            except OSError:
                self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class CountingNode:
    """A JSON-lines node writing values 0, 1, 2, … at about `rate` per second to `fd`."""

    def __init__(self, fd: int, rate: float, quantity: str = "water_level_m") -> None:
        self.fd = fd
        self.rate = rate
        self.quantity = quantity
        self.next_value = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="counting-node", daemon=True)

    def start(self) -> CountingNode:
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(0.02):
            due = int((time.monotonic() - started) * self.rate)
            lines = b"".join(
                b'{"q": "%s", "v": %d}\n' % (self.quantity.encode(), v)
                for v in range(self.next_value, due)
            )
            if not lines:
                continue
            with contextlib.suppress(OSError):
                os.write(self.fd, lines)
                self.next_value = due

    @property
    def written(self) -> int:
        """How many values have been written (0 … written-1)."""
        return self.next_value

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
