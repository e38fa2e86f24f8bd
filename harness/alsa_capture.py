"""Capture what PyAudio plays, sample for sample, with no sound card (docs/testing.md "Audio").

Why this module exists: the machines that run the tests have no sound card, and a mocked PyAudio
would not show what the amplifier really gets. ALSA's ``file`` PCM plugin does: a private ALSA
config makes the default output a ``file`` PCM over the ``null`` PCM, and every sample written
to a PyAudio stream lands in a raw file (signed 16-bit little-endian, the stream's rate and
channels).

Usage in a test::

    with alsa_capture(tmp_path) as cap:          # sets ALSA_CONFIG_PATH
        player = Player(rate=22050); player.open()   # PyAudio() created *after*
        ...
        player.close()                            # the file's tail appears at close
    assert cap.sound_runs(22050) == [...]

For a service in a subprocess pass ``env=cap.env()``. Pitfalls (see docs/testing.md):
``ALSA_CONFIG_PATH`` is read when ``PyAudio()`` is created, so set it first; the
file lags the writes by a period or two until the stream is stopped or closed,
so read it after that; the ``null`` sink does not pace, so never assert on
wall-clock play time from the file. PortAudio prints JACK noise on stderr while
``PyAudio()`` starts: :func:`quiet_pyaudio` hides it.

Variants: ``devices={"loudspeaker": "Village loudspeaker"}`` adds named output
devices (each captured to its own file, listed by PortAudio under that name);
``failing=True`` makes the default device write to ``/dev/full`` so writes fail
after the first period (a device that breaks mid-play); ``no_device=True``
leaves no output device at all.
"""

from __future__ import annotations

import array
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyaudio

from audio.player import quiet_stderr

__all__ = ["AlsaCapture", "alsa_capture", "quiet_pyaudio", "read_samples", "sound_runs"]


@dataclass
class AlsaCapture:
    """An ALSA config that captures output to files, and readers for those files."""

    config_path: Path
    output_path: Path
    device_paths: dict[str, Path] = field(default_factory=dict)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for a subprocess whose PyAudio should write to this capture."""
        return {**(os.environ if base is None else base), "ALSA_CONFIG_PATH": str(self.config_path)}

    def raw(self, device: str | None = None) -> bytes:
        """Everything written so far to the default device (or the named one)."""
        path = self.output_path if device is None else self.device_paths[device]
        return path.read_bytes() if path.exists() else b""

    def samples(self, device: str | None = None) -> array.array[int]:
        """The captured signed 16-bit samples (interleaved if the stream was stereo)."""
        return read_samples(self.raw(device))

    def is_silent(self, device: str | None = None) -> bool:
        """True when nothing but zero samples (or nothing at all) was written."""
        return not any(self.samples(device))

    def sound_runs(
        self, rate: int, min_gap_s: float = 0.01, device: str | None = None
    ) -> list[tuple[int, int]]:
        """(start, end) sample indices of the sounding parts; see :func:`sound_runs`."""
        return sound_runs(self.samples(device), rate, min_gap_s)


def read_samples(raw: bytes) -> array.array[int]:
    """Raw 16-bit little-endian bytes as an array of ints (a trailing odd byte is dropped)."""
    samples = array.array("h")
    samples.frombytes(raw[: len(raw) - len(raw) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def sound_runs(
    samples: array.array[int], rate: int, min_gap_s: float = 0.01
) -> list[tuple[int, int]]:
    """Sounding stretches: runs of non-zero samples, merged across zero gaps shorter than min_gap_s.

    A sine crosses zero now and then, so single zero samples inside a tone do
    not split it; written silence (repeat gaps) is longer than ``min_gap_s``.
    """
    min_gap = max(1, round(min_gap_s * rate))
    runs: list[tuple[int, int]] = []
    start = last = None
    for index, value in enumerate(samples):
        if value == 0:
            continue
        if start is None or last is None:
            start = index
        elif index - last > min_gap:
            runs.append((start, last + 1))
            start = index
        last = index
    if start is not None and last is not None:
        runs.append((start, last + 1))
    return runs


def _pcm_file(path: Path, hint: str | None = None) -> str:
    shown = f' hint {{ show on description "{hint}" }}' if hint else ""
    return f'{{ type file slave.pcm "null" file "{_quote(path)}" format "raw"{shown} }}'


def _quote(path: Path | str) -> str:
    text = str(path)
    if any(c in text for c in '"\\%\n'):
        raise ValueError(f"path {text!r} cannot be used in an ALSA config")
    return text


def write_alsa_config(
    directory: Path,
    *,
    devices: dict[str, str] | None = None,
    failing: bool = False,
    no_device: bool = False,
    mic: Path | None = None,
) -> AlsaCapture:
    """Write ``directory/asound.conf`` capturing the default output to ``directory/out.raw``.

    With ``mic``, the default device also records: its capture side reads that raw file
    (16-bit LE at the stream's rate, then zeros; docs/testing.md "A microphone that reads a file").
    """
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / "out.raw"
    lines = ["pcm.null { type null }"]
    if no_device:
        # A default on a sound card that does not exist: PortAudio then lists no
        # output at all. (A config with no default PCM makes PortAudio abort.)
        lines.append("pcm.!default { type hw card 31 device 0 }")
    elif mic is not None:
        lines.append(f"pcm.outfile {_pcm_file(output)}")
        lines.append(
            f'pcm.micfile {{ type file slave.pcm "null" file "/dev/null" '
            f'infile "{_quote(mic)}" format "raw" }}'
        )
        lines.append('pcm.!default { type asym playback.pcm "outfile" capture.pcm "micfile" }')
    else:
        target = Path("/dev/full") if failing else output
        lines.append(f"pcm.!default {_pcm_file(target)}")
    device_paths = {}
    for name, description in (devices or {}).items():
        device_paths[name] = directory / f"out-{name}.raw"
        lines.append(f"pcm.{name} {_pcm_file(device_paths[name], description)}")
    config = directory / "asound.conf"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return AlsaCapture(config, output, device_paths)


@contextlib.contextmanager
def alsa_capture(
    directory: Path,
    *,
    devices: dict[str, str] | None = None,
    failing: bool = False,
    no_device: bool = False,
    mic: Path | None = None,
) -> Iterator[AlsaCapture]:
    """Write the config and point ``ALSA_CONFIG_PATH`` at it until the block ends."""
    capture = write_alsa_config(
        directory, devices=devices, failing=failing, no_device=no_device, mic=mic
    )
    saved = os.environ.get("ALSA_CONFIG_PATH")
    os.environ["ALSA_CONFIG_PATH"] = str(capture.config_path)
    try:
        yield capture
    finally:
        if saved is None:
            os.environ.pop("ALSA_CONFIG_PATH", None)
        else:
            os.environ["ALSA_CONFIG_PATH"] = saved


def quiet_pyaudio() -> pyaudio.PyAudio:
    """``pyaudio.PyAudio()`` with file descriptor 2 silenced while it probes for JACK."""
    with quiet_stderr():
        return pyaudio.PyAudio()
