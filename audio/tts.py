"""Speech rendering: (voice, spoken text) → espeak-ng → cached WAV → 16-bit PCM.

Recorded clips are the first choice; this is the fallback that lets the centre
send any text. What is said and by which voice is decided elsewhere
(audio/speech_text.py cuts text by language and script, audio/voices.py picks
the voice, audio/pinyin.py turns Chinese into pinyin); this module only runs
the engine and keeps what it made.

:class:`Tts` runs espeak-ng as a subprocess writing a WAV into the cache
folder, keyed by the SHA-256 of the voice, speed and spoken text, so the same
sentence is synthesised once and then loads in a millisecond. The engine runs
at a lower CPU priority (``nice``, default 10) than the service, so rendering
a long message never starves the playback of the one already sounding.
Renders of different texts run in parallel (each writes a temporary file and
renames it into place), so a short urgent sentence never queues behind a long
render of another broadcast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import threading
from pathlib import Path

from audio.clips import BadAudio, decode_wav
from audio.engine_spares import EngineSpares, Spare
from audio.pinyin import to_pinyin

__all__ = ["Tts", "TtsUnavailable", "to_pinyin"]

log = logging.getLogger(__name__)

#: How much nicer than the service the engine runs (0: as the service).
RENDER_NICE = 10


class TtsUnavailable(Exception):
    """Text could not be turned into speech (engine missing, disabled or failing)."""


class Tts:
    """espeak-ng speech, cached on disk by what is spoken and by which voice.

    ``voice`` is the configured voice (Chinese, and the fallback); each render
    may name another. ``engine`` is the espeak-ng executable (``"none"``
    disables TTS: every render raises TtsUnavailable). The first render of a
    sentence takes tens of milliseconds, a cached one about a millisecond.
    """

    def __init__(
        self,
        cache_dir: Path,
        voice: str = "cmn-latn-pinyin",
        engine: str = "espeak-ng",
        rate: int = 22050,
        *,
        speed_wpm: int = 150,
        timeout_s: float = 30.0,
        max_cache_files: int = 1000,
        nice: int = RENDER_NICE,
        spares: bool = False,
    ) -> None:
        self.cache_dir = cache_dir
        self.voice = voice
        self.engine = engine
        self.rate = rate
        self.speed_wpm = speed_wpm
        self.timeout_s = timeout_s
        self.max_cache_files = max_cache_files
        self.nice = nice
        self._lock = threading.Lock()
        self._voices: set[str] | None = None
        self._listing = ""
        self._spares = (
            EngineSpares(engine, speed_wpm, cache_dir, nice)
            if spares and engine != "none"
            else None
        )

    def voice_listing(self) -> str:
        """``espeak-ng --voices`` (all languages), run once; raises TtsUnavailable."""
        if self.engine == "none":
            raise TtsUnavailable('text to speech is disabled (audio.tts = "none")')
        with self._lock:
            if self._voices is None:
                listing = self._engine_output(["--voices"])
                lines = listing.splitlines()[1:]
                self._voices = {f.casefold() for line in lines for f in line.split()[1:5]}
                self._listing = listing
            return self._listing

    def has_voice(self, voice: str) -> bool:
        """Whether the engine knows ``voice`` (name, language or file; ``+variant`` ignored)."""
        self.voice_listing()
        assert self._voices is not None
        return voice.split("+")[0].casefold() in self._voices

    def check(self, voice: str | None = None) -> None:
        """Raise TtsUnavailable unless the engine runs and has ``voice`` (default: the configured).

        espeak-ng silently falls back to its English voice for an unknown
        voice name, which would read pinyin as English letters; so the voice
        is looked up in ``--voices`` before the first render.
        """
        wanted = voice or self.voice
        if not self.has_voice(wanted):
            raise TtsUnavailable(f"{self.engine} has no voice {wanted!r}")

    def spoken_text(self, text: str, voice: str | None = None) -> str:
        """What is fed to the engine: pinyin for a pinyin voice, else the text itself."""
        return to_pinyin(text) if "pinyin" in (voice or self.voice) else text.strip()

    def cache_path(self, text: str, voice: str | None = None) -> Path:
        """The cache file for ``text`` said by ``voice`` (default: the configured voice)."""
        voice = voice or self.voice
        return self.spoken_cache_path(voice, self.spoken_text(text, voice))

    def spoken_cache_path(self, voice: str, spoken: str) -> Path:
        """The cache file for engine input ``spoken`` (SHA-256 of voice, speed and input)."""
        key = json.dumps([voice, self.speed_wpm, spoken], ensure_ascii=False)
        return self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()}.wav"

    def render(self, text: str, voice: str | None = None, *, urgent: bool = False) -> bytes:
        """``text`` spoken by one voice, as 16-bit mono PCM at ``rate``; raises TtsUnavailable."""
        voice = voice or self.voice
        return self.render_spoken(voice, self.spoken_text(text, voice), urgent=urgent)

    def render_spoken(self, voice: str, spoken: str, *, urgent: bool = False) -> bytes:
        """Engine input ``spoken`` said by ``voice`` (b"" for none); raises TtsUnavailable.

        ``urgent``: a first sound waits for it (a warm spare engine at the service's
        priority, when the Tts keeps spares: audio/engine_spares.py).
        """
        if not spoken:
            return b""
        self.check(voice)
        path = self.spoken_cache_path(voice, spoken)
        wav = self._cached(path) or self._synthesise(voice, spoken, path, urgent)
        try:
            return decode_wav(wav, self.rate)
        except BadAudio as exc:
            path.unlink(missing_ok=True)
            raise TtsUnavailable(f"{self.engine} wrote an unreadable WAV: {exc}") from exc

    def _cached(self, path: Path) -> bytes | None:
        try:
            wav = path.read_bytes()
            os.utime(path)
        except OSError:
            return None
        return wav

    def close(self) -> None:
        """Stop the spare engines, if any."""
        if self._spares is not None:
            self._spares.close()

    def _synthesise(self, voice: str, spoken: str, path: Path, urgent: bool = False) -> bytes:
        spare = self._spares.take(voice, urgent=urgent) if self._spares is not None else None
        if spare is not None:
            try:
                return self._finish_spare(spare, spoken, path)
            except TtsUnavailable as exc:
                log.warning("a spare %s failed (%s); starting it anew", self.engine, exc)
            finally:
                spare.out.unlink(missing_ok=True)
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp")
            os.close(fd)
        except OSError as exc:
            raise TtsUnavailable(f"TTS cache {self.cache_dir} is not writable: {exc}") from exc
        try:
            self._run_engine(voice, spoken, Path(tmp))
            wav = Path(tmp).read_bytes()
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        self._prune()
        return wav

    def _finish_spare(self, spare: Spare, spoken: str, path: Path) -> bytes:
        self._communicate(spare.proc, spoken)
        wav = spare.out.read_bytes()
        if len(wav) <= 44:
            raise TtsUnavailable(f"{self.engine} wrote no audio")
        os.replace(spare.out, path)
        self._prune()
        return wav

    def _run_engine(self, voice: str, spoken: str, out: Path) -> None:
        args = ["-v", voice, "-s", str(self.speed_wpm), "-w", str(out), "--stdin"]
        self._engine_output(args, spoken)
        if out.stat().st_size <= 44:
            raise TtsUnavailable(f"{self.engine} wrote no audio")

    def _engine_output(self, args: list[str], stdin: str = "") -> str:
        """Run the engine (niced); its stdout, or TtsUnavailable with what went wrong."""
        try:
            proc = subprocess.Popen(
                [self.engine, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise TtsUnavailable(f"TTS engine {self.engine!r} is not installed") from exc
        except OSError as exc:
            raise TtsUnavailable(f"TTS engine {self.engine!r} failed: {exc}") from exc
        if self.nice > 0:
            # After the spawn rather than in a preexec_fn (not safe with threads): the
            # engine spends its first milliseconds loading, not competing for the CPU.
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, proc.pid, min(19, os.nice(0) + self.nice))
        return self._communicate(proc, stdin)

    def _communicate(self, proc: subprocess.Popen[bytes], stdin: str) -> str:
        """Give a started engine its input; its stdout, or TtsUnavailable."""
        try:
            stdout, stderr = proc.communicate(stdin.encode(), timeout=self.timeout_s)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise TtsUnavailable(f"TTS engine {self.engine!r} failed: {exc}") from exc
        except OSError as exc:  # the spare's pipe broke: it died meanwhile
            proc.kill()
            raise TtsUnavailable(f"TTS engine {self.engine!r} failed: {exc}") from exc
        if proc.returncode != 0:
            detail = stderr.decode(errors="replace").strip()[:200]
            raise TtsUnavailable(f"{self.engine} exited with {proc.returncode}: {detail}")
        return stdout.decode(errors="replace")

    def _prune(self) -> None:
        """Keep the newest ``max_cache_files`` renders (a hit refreshes a file's time)."""
        try:
            files = sorted(self.cache_dir.glob("*.wav"), key=lambda p: p.stat().st_mtime)
            for old in files[: max(0, len(files) - self.max_cache_files)]:
                old.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not prune the TTS cache %s: %s", self.cache_dir, exc)
