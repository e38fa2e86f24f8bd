"""The loudspeaker output: PyAudio, paced by the clock, stoppable within 200 ms.

A warning must stop within 200 ms when a more urgent one arrives or the centre
cancels it, on whatever card the station has — including sinks that accept
audio as fast as it is written (the ALSA ``file`` PCM of the tests, some
USB and network devices) and cards with half a second of buffer. So the
player does not lean on the device's buffer for timing. It keeps its own
timeline on ``time.monotonic()``: sound is written in 20 ms chunks, and
before each chunk it sleeps until at most ``max_ahead_s`` (100 ms) of written
audio is still to be heard. An abort (a ``threading.Event``) wakes that sleep
at once, so after an abort at most ~120 ms of sound remains queued.

Silence (the gap between repeats, waiting for speech) is written as zero
samples on the same timeline: the amplifier gets a continuous stream, and a
capture of the output shows the gaps to the sample.

Latency: the PyAudio instance and the output stream stay open between
broadcasts (opening costs several milliseconds and prints JACK noise); an idle
stream is only stopped (``standby()``) and restarted on the next write, which
costs microseconds. ``on_first_write`` is called just before the first chunk
of each ``play()`` is handed to ``stream.write()``, for the latency benchmark.

The stream is 16-bit mono at ``rate`` when the device allows it; otherwise
stereo, or the device's own rate, converted on the fly with :mod:`audioop`
(some USB cards open only 48 kHz stereo on their ``hw:`` device).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyaudio

from audio.pcm import SAMPLE_WIDTH, audioop, scale

log = logging.getLogger(__name__)


class AudioDeviceError(Exception):
    """The output device is missing, refuses the format, or failed while playing."""


@dataclass(frozen=True)
class _StreamFormat:
    """What the opened stream takes, and how to get there from 16-bit mono at the player rate."""

    rate: int
    channels: int


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration (PortAudio's JACK probing noise).

    fd 2 is the whole process's: a log line another thread writes meanwhile would vanish.
    The root logger's handlers are held for the duration, so such lines wait instead.
    """
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.acquire()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        for handler in reversed(handlers):
            handler.release()


def list_devices(pa: pyaudio.PyAudio, direction: str) -> list[tuple[int, str]]:
    """(index, name) of every device with ``direction`` ("Input" or "Output") channels."""
    found = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        if int(info.get(f"max{direction}Channels", 0)) > 0:
            found.append((index, str(info.get("name", ""))))
    return found


def pick_device(devices: list[tuple[int, str]], device: str | int, what: str) -> int | None:
    """PortAudio index for ``device`` among ``devices``: an index, ``"default"`` (None), or a
    name (substring). An exact name wins over a substring match; the match ignores case.
    Raises LookupError, naming the ``what`` devices there are, when nothing matches."""
    if isinstance(device, int) or (isinstance(device, str) and device.isdigit()):
        wanted = int(device)
        if any(index == wanted for index, _ in devices):
            return wanted
        raise LookupError(f"no {what} device with index {wanted}; have {devices}")
    if device == "default":
        return None
    needle = device.casefold()
    exact = [index for index, name in devices if name.casefold() == needle]
    partial = [index for index, name in devices if needle in name.casefold()]
    if exact or partial:
        return (exact or partial)[0]
    raise LookupError(f"no {what} device named like {device!r}; have {devices}")


def output_devices(pa: pyaudio.PyAudio) -> list[tuple[int, str]]:
    """(index, name) of every device that can play."""
    return list_devices(pa, "Output")


def find_output_device(pa: pyaudio.PyAudio, device: str | int) -> int | None:
    """PortAudio index of the output ``device`` (see `pick_device`); AudioDeviceError if none."""
    try:
        return pick_device(output_devices(pa), device, "output")
    except LookupError as exc:
        raise AudioDeviceError(str(exc)) from None


class Player:
    """Plays 16-bit mono PCM on one output device; used from one thread at a time.

    ``volume`` (0.0–1.0) is the default for :meth:`play`. ``open()`` is
    optional (the first ``play()`` opens) but does the slow part up front.
    """

    def __init__(
        self,
        device: str | int = "default",
        rate: int = 22050,
        volume: float = 1.0,
        *,
        chunk_s: float = 0.02,
        max_ahead_s: float = 0.1,
        on_first_write: Callable[[float], None] | None = None,
    ) -> None:
        self.device = device
        self.rate = rate
        self.volume = _clamp_volume(volume)
        self.chunk_s = chunk_s
        self.max_ahead_s = max_ahead_s
        self.on_first_write = on_first_write
        """Called with the seconds of sound still queued, just before a play's first write."""
        self._chunk_bytes = SAMPLE_WIDTH * max(1, round(chunk_s * rate))
        self._lock = threading.RLock()
        self._pa: pyaudio.PyAudio | None = None
        self._stream: pyaudio.Stream | None = None
        self._format = _StreamFormat(rate, 1)
        self._ratecv_state: Any = None
        self._running = False
        self._writing: pyaudio.Stream | None = None  # the stream a write is blocked in
        self._abandoned: tuple[pyaudio.Stream, pyaudio.PyAudio | None] | None = None
        self._t0 = 0.0
        self._written_s = 0.0

    # -- lifecycle -------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether the output stream is open."""
        return self._stream is not None

    def open(self) -> None:
        """Open PortAudio and the output stream (no-op when open); raises AudioDeviceError."""
        with self._lock:
            if self._stream is not None:
                return
            with quiet_stderr():
                pa = pyaudio.PyAudio()
            try:
                index = find_output_device(pa, self.device)
                self._stream, self._format = self._open_stream(pa, index)
            except BaseException:
                pa.terminate()
                raise
            self._pa = pa
            self._ratecv_state = None
            self._running = True
            log.info(
                "audio output open: device %r, %d Hz, %d channel(s)",
                self.device,
                self._format.rate,
                self._format.channels,
            )

    def close(self) -> None:
        """Stop and close the stream and PortAudio; safe to call twice; never blocks.

        A write may be blocked in the device right now (a wedged driver): the stream is then
        only let go of here, and the writing thread closes it if its write ever returns.
        Closing a stream under a write in progress is not safe in PortAudio.
        """
        with self._lock:
            stream, pa = self._stream, self._pa
            self._stream, self._pa, self._running = None, None, False
            self._written_s = 0.0
            if stream is not None and stream is self._writing:
                self._abandoned = (stream, pa)
                log.warning("audio device busy in a write; leaving its stream to that write")
                return
        _close_stream(stream, pa)

    def standby(self) -> None:
        """Stop the stream while nothing plays (no underruns on an idle card); keep it open."""
        with self._lock:
            if self._stream is not None and self._running:
                with contextlib.suppress(OSError):
                    self._stream.stop_stream()
                self._running = False

    # -- playing ---------------------------------------------------------

    def play(
        self, pcm: Iterable[bytes], abort: threading.Event, volume: float | None = None
    ) -> bool:
        """Play ``pcm`` (16-bit mono at ``rate``); True if played to the end, False if aborted.

        Raises AudioDeviceError when the device is missing or a write fails
        (the stream is then closed; the next call reopens it).
        """
        gain = self.volume if volume is None else _clamp_volume(volume)
        return self._write_paced(_rechunk(pcm, self._chunk_bytes), abort, gain, announce=True)

    def silence(self, seconds: float, abort: threading.Event) -> bool:
        """Write ``seconds`` of silence in real time; False if aborted first."""
        zeros = bytes(self._chunk_bytes)
        whole, rest = divmod(SAMPLE_WIDTH * round(seconds * self.rate), self._chunk_bytes)
        chunks = [zeros] * whole + ([zeros[:rest]] if rest else [])
        return self._write_paced(chunks, abort, 1.0, announce=False)

    def drain(self, abort: threading.Event | None = None) -> bool:
        """Wait until everything written has been heard (before switching the amplifier off)."""
        remaining = self.queued_s()
        if abort is None:
            time.sleep(remaining)
            return True
        return not abort.wait(remaining)

    def queued_s(self) -> float:
        """Seconds of already written sound not yet heard (by the player's clock)."""
        return max(0.0, self.audible_until() - time.monotonic())

    def audible_until(self) -> float:
        """``time.monotonic()`` value at which the last written sample will have been heard."""
        return self._t0 + self._written_s

    def _write_paced(
        self, chunks: Iterable[bytes], abort: threading.Event, gain: float, *, announce: bool
    ) -> bool:
        self.open()
        for chunk in chunks:
            if not self._wait_for_room(abort):
                return False
            if announce:
                announce = False
                if self.on_first_write is not None:
                    self.on_first_write(self.queued_s())
            self._write(scale(chunk, gain))
        return True

    def _wait_for_room(self, abort: threading.Event) -> bool:
        """Sleep until at most max_ahead_s is queued; False if aborted."""
        if abort.is_set():
            return False
        now = time.monotonic()
        if now >= self._t0 + self._written_s:
            self._t0, self._written_s = now, 0.0  # ran dry: a new timeline starts now
        ahead = self._t0 + self._written_s - now
        if ahead > self.max_ahead_s:
            return not abort.wait(ahead - self.max_ahead_s)
        return True

    def _write(self, chunk: bytes) -> None:
        """Hand one chunk to the device. The lock is not held across ``stream.write()``:
        a device that stops taking data blocks this thread only, never `close()`."""
        with self._lock:
            stream = self._stream
            if stream is None:
                raise AudioDeviceError("the audio output was closed")
            data = self._to_device(chunk)
            frames = len(data) // (SAMPLE_WIDTH * self._format.channels)
            try:
                if not self._running:
                    stream.start_stream()
                    self._running = True
            except (OSError, ValueError) as exc:
                self.close()
                raise AudioDeviceError(
                    f"starting audio device {self.device!r} failed: {exc}"
                ) from exc
            self._writing = stream
        try:
            stream.write(data, frames)
        except (OSError, ValueError) as exc:
            self._write_done(stream)
            self.close()
            raise AudioDeviceError(
                f"writing to audio device {self.device!r} failed: {exc}"
            ) from exc
        if self._write_done(stream):
            raise AudioDeviceError("the audio output was closed")
        self._written_s += len(chunk) / (SAMPLE_WIDTH * self.rate)

    def _write_done(self, stream: pyaudio.Stream) -> bool:
        """A write returned; True if `close()` let go of its stream meanwhile (now closed)."""
        with self._lock:
            self._writing = None
            abandoned = self._abandoned
            if abandoned is None or abandoned[0] is not stream:
                return False
            self._abandoned = None
        _close_stream(*abandoned)
        return True

    def _to_device(self, chunk: bytes) -> bytes:
        fmt = self._format
        if fmt.rate != self.rate:
            chunk, self._ratecv_state = audioop.ratecv(
                chunk, SAMPLE_WIDTH, 1, self.rate, fmt.rate, self._ratecv_state
            )
        if fmt.channels == 2:
            chunk = audioop.tostereo(chunk, SAMPLE_WIDTH, 1.0, 1.0)
        return chunk

    def _open_stream(
        self, pa: pyaudio.PyAudio, index: int | None
    ) -> tuple[pyaudio.Stream, _StreamFormat]:
        """Open 16-bit output, trying mono at our rate, then stereo, then the device's rate."""
        try:
            info = (
                pa.get_default_output_device_info()
                if index is None
                else pa.get_device_info_by_index(index)
            )
        except (OSError, ValueError) as exc:
            raise AudioDeviceError(f"no audio output device {self.device!r}: {exc}") from exc
        device_rate = int(float(info.get("defaultSampleRate", self.rate)))
        tries = [_StreamFormat(self.rate, 1), _StreamFormat(self.rate, 2)]
        tries += [_StreamFormat(device_rate, 1), _StreamFormat(device_rate, 2)]
        errors = []
        for fmt in dict.fromkeys(tries):
            frames = max(1, round(self.chunk_s * fmt.rate))
            try:
                stream = pa.open(
                    format=pyaudio.paInt16,
                    channels=fmt.channels,
                    rate=fmt.rate,
                    output=True,
                    output_device_index=index,
                    frames_per_buffer=frames,
                )
            except (OSError, ValueError) as exc:
                errors.append(f"{fmt.rate} Hz x{fmt.channels}: {exc}")
                continue
            return stream, fmt
        raise AudioDeviceError(
            f"audio device {self.device!r} cannot be opened: {'; '.join(errors)}"
        )


def _close_stream(stream: pyaudio.Stream | None, pa: pyaudio.PyAudio | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.stop_stream()
        with contextlib.suppress(OSError):
            stream.close()
    if pa is not None:
        pa.terminate()


def _clamp_volume(volume: float) -> float:
    return min(1.0, max(0.0, float(volume)))


def _rechunk(pcm: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Cut a stream of byte strings into ``size``-byte chunks (the last may be shorter)."""
    pending = b""
    for part in pcm:
        data = memoryview(pending + part) if pending else memoryview(part)
        whole = len(data) - len(data) % size
        for start in range(0, whole, size):
            yield bytes(data[start : start + size])
        pending = bytes(data[whole:])
    pending = pending[: len(pending) - len(pending) % SAMPLE_WIDTH]
    if pending:
        yield pending
