"""The village microphone (喊话): a PyAudio input read in real time while the button is held.

Wiring: a USB sound card's microphone input (any PortAudio input device; `device` is a
name, part of one, or an index) and a push-to-talk button between a GPIO pin and ground
(the pin's pull-up holds it high; pressed reads low). The button is in audio/ptt.py.

`MicInput` opens the input once at start — so a missing device is a clear error at
start, not at the first press — and reads 20 ms chunks of 16-bit mono at the player's
rate, converting from the card's own rate or channels when it insists. Reads are paced
on `time.monotonic()`: a real card paces them anyway, and a device that does not (the
ALSA file capture of the tests) still delivers sound at the speed it is spoken.

`Talk` is one use of the microphone, from press to release. A capture thread reads
while the button is held and keeps at most `max_buffer_s` of sound waiting; the
broadcast queue plays `Talk.source()` once the amplifier has warmed up. The source
first throws away what was buffered (sound from the warm-up is dropped, never
delayed), then yields each chunk as it is read. The time from reading a chunk to
handing the next one to the player (which writes the previous one first) is kept in
`latencies_s`: an upper bound on the microphone-to-loudspeaker delay this code adds.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyaudio

from audio.pcm import SAMPLE_WIDTH, audioop, scale
from audio.player import list_devices, pick_device, quiet_stderr

log = logging.getLogger(__name__)


class MicrophoneError(Exception):
    """The input device is missing, refuses every format, or failed while reading."""


def input_devices(pa: pyaudio.PyAudio) -> list[tuple[int, str]]:
    """(index, name) of every device that can record."""
    return list_devices(pa, "Input")


def find_input_device(pa: pyaudio.PyAudio, device: str | int) -> int | None:
    """PortAudio index for ``device``: an index, ``"default"`` (None) or a name (substring)."""
    devices = input_devices(pa)
    if device == "default" and not devices:
        raise MicrophoneError("no input device at all (is the USB sound card plugged in?)")
    try:
        return pick_device(devices, device, "input")
    except LookupError as exc:
        raise MicrophoneError(str(exc)) from None


class MicInput:
    """One PyAudio input stream delivering 16-bit mono chunks at ``rate``."""

    def __init__(
        self, device: str | int, rate: int, *, chunk_s: float = 0.02, gain: float = 1.0
    ) -> None:
        self.device = device
        self.rate = rate
        self.chunk_s = chunk_s
        self.gain = gain
        self._pa: pyaudio.PyAudio | None = None
        self._stream: pyaudio.Stream | None = None
        self._device_rate = rate
        self._channels = 1
        self._ratecv_state: Any = None

    def open(self) -> None:
        """Find and open the input (stopped until `start`); raises MicrophoneError."""
        with quiet_stderr():
            pa = pyaudio.PyAudio()
        try:
            index = find_input_device(pa, self.device)
            self._stream = self._open_stream(pa, index)
        except BaseException:
            pa.terminate()
            raise
        self._pa = pa
        self._stream.stop_stream()
        log.info(
            "microphone open: device %r, %d Hz, %d channel(s)",
            self.device,
            self._device_rate,
            self._channels,
        )

    def _open_stream(self, pa: pyaudio.PyAudio, index: int | None) -> pyaudio.Stream:
        try:
            info = (
                pa.get_default_input_device_info()
                if index is None
                else pa.get_device_info_by_index(index)
            )
        except (OSError, ValueError) as exc:
            raise MicrophoneError(f"no microphone input {self.device!r}: {exc}") from exc
        device_rate = int(float(info.get("defaultSampleRate", self.rate)))
        errors = []
        for rate, channels in dict.fromkeys(
            [(self.rate, 1), (self.rate, 2), (device_rate, 1), (device_rate, 2)]
        ):
            try:
                stream = pa.open(
                    format=pyaudio.paInt16,
                    channels=channels,
                    rate=rate,
                    input=True,
                    input_device_index=index,
                    frames_per_buffer=max(1, round(self.chunk_s * rate)),
                )
            except (OSError, ValueError) as exc:
                errors.append(f"{rate} Hz x{channels}: {exc}")
                continue
            self._device_rate, self._channels = rate, channels
            return stream
        raise MicrophoneError(f"microphone {self.device!r} cannot be opened: {'; '.join(errors)}")

    def start(self) -> None:
        if self._stream is None:
            raise MicrophoneError("the microphone is not open")
        with contextlib.suppress(OSError):
            self._stream.start_stream()
        self._ratecv_state = None

    def stop(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.stop_stream()

    def read(self) -> bytes:
        """One chunk (blocks on a real card); raises MicrophoneError when the read fails."""
        stream = self._stream
        if stream is None:
            raise MicrophoneError("the microphone is not open")
        frames = max(1, round(self.chunk_s * self._device_rate))
        try:
            data = stream.read(frames, exception_on_overflow=False)
        except (OSError, ValueError) as exc:
            raise MicrophoneError(f"reading microphone {self.device!r} failed: {exc}") from exc
        if self._channels == 2:
            data = audioop.tomono(data, SAMPLE_WIDTH, 0.5, 0.5)
        if self._device_rate != self.rate:
            data, self._ratecv_state = audioop.ratecv(
                data, SAMPLE_WIDTH, 1, self._device_rate, self.rate, self._ratecv_state
            )
        return scale(data, self.gain)

    def close(self) -> None:
        stream, pa = self._stream, self._pa
        self._stream = self._pa = None
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.stop_stream()
            with contextlib.suppress(OSError):
                stream.close()
        if pa is not None:
            pa.terminate()


class Talk:
    """One use of the microphone: capture while held, a live source for the broadcast."""

    def __init__(
        self,
        mic: MicInput,
        *,
        max_buffer_s: float = 0.1,
        record: bool = False,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._mic = mic
        self._record = record
        self._on_error = on_error
        chunks = max(1, round(max_buffer_s / mic.chunk_s))
        self._buffer: collections.deque[tuple[bytes, float]] = collections.deque(maxlen=chunks)
        self._cond = threading.Condition()
        self._done = False
        self.recorded = bytearray()
        self.latencies_s: list[float] = []
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._capture, name="microphone", daemon=True)

    def start(self) -> None:
        self._mic.start()
        self._thread.start()

    def finish(self) -> None:
        """The button was released: stop capturing; the source ends after what is buffered."""
        with self._cond:
            self._done = True
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        self._mic.stop()

    @property
    def done(self) -> bool:
        return self._done

    def _capture(self) -> None:
        chunk_s = self._mic.chunk_s
        t0 = time.monotonic()
        n = 0
        while not self._done:
            try:
                chunk = self._mic.read()
            except Exception as exc:
                log.error("microphone: %s", exc)
                if self._on_error is not None:
                    self._on_error(str(exc))
                with self._cond:
                    self._done = True
                    self._cond.notify_all()
                return
            read_at = time.monotonic()
            with self._cond:
                self._buffer.append((chunk, read_at))
                self._cond.notify_all()
            if self._record:
                self.recorded += chunk
            n += 1
            # A card paces the reads; a device that does not is paced here, in real time.
            ahead = t0 + n * chunk_s - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def source(self) -> Iterator[bytes]:
        """What the loudspeakers play: fresh chunks as they are read, until release."""
        with self._cond:
            self._buffer.clear()  # what was said during the amplifier's warm-up is dropped
        while True:
            with self._cond:
                while not self._buffer and not self._done:
                    self._cond.wait(0.1)
                if not self._buffer:
                    return
                chunk, read_at = self._buffer.popleft()
            yield chunk
            self.latencies_s.append(time.monotonic() - read_at)
