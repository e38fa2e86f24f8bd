"""Speech from text: Chinese → tone-numbered pinyin → espeak-ng → cached WAV.

Recorded clips are the first choice; this is the fallback that lets the centre
send any text. espeak-ng is the only offline Mandarin voice that installs from
Debian without downloading a model, but its ``cmn`` dictionary lacks many
characters that warnings are made of (注, 意, 洪, 警 …) and spells them out as
English letters. So the text is first turned into tone-numbered pinyin with
pypinyin (offline, phrase-aware for polyphones such as 银行/行走) and spoken
with the ``cmn-latn-pinyin`` voice, which reads pinyin syllables natively.

:func:`to_pinyin` also makes the rest of a real warning speakable: numbers
become Chinese numerals (espeak reads 10000 as 十千), years and hotlines are
read digit by digit (二〇二六年, 拨打幺幺九), ``3.5`` → 三点五, ``50%`` →
百分之五十, ``°C`` → 摄氏度, ``3-5`` → 三到五, Latin letters are spelled
(``CO`` → C O), and punctuation becomes pauses (``,`` short, ``;`` longer, a
full stop a sentence break).

:class:`Tts` runs espeak-ng as a subprocess writing a WAV into the cache
folder, keyed by the SHA-256 of the voice, speed and spoken text, so the same
warning is synthesised once and then loads in a millisecond.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
import unicodedata
from pathlib import Path

from audio.clips import BadAudio, decode_wav

log = logging.getLogger(__name__)

_DIGIT_HAN = "零一二三四五六七八九"
_YEAR_HAN = "〇一二三四五六七八九"
_PHONE_HAN = "零幺二三四五六七八九"
_UNITS = {
    "km/h": "公里每小时",
    "mm/h": "毫米每小时",
    "m/s": "米每秒",
    "mm": "毫米",
    "cm": "厘米",
    "km": "公里",
    "kg": "公斤",
    "m": "米",
}
_SHORT_PAUSE = ","
_LONG_PAUSE = ";"
_SENTENCE_END = ".\n"
_PAUSES = {
    ",": _SHORT_PAUSE,
    "、": _SHORT_PAUSE,
    "(": _SHORT_PAUSE,
    ")": _SHORT_PAUSE,
    "《": _SHORT_PAUSE,
    "》": _SHORT_PAUSE,
    "—": _SHORT_PAUSE,
    "…": _SHORT_PAUSE,
    ";": _LONG_PAUSE,
    ":": _LONG_PAUSE,
    "。": _SENTENCE_END,
    ".": _SENTENCE_END,
    "!": _SENTENCE_END,
    "?": _SENTENCE_END,
    "\n": _SENTENCE_END,
}


class TtsUnavailable(Exception):
    """Text could not be turned into speech (engine missing, disabled or failing)."""


def to_pinyin(text: str) -> str:
    """``text`` as tone-numbered pinyin (neutral tone 5) that espeak-ng reads as Mandarin.

    The result is plain ASCII: syllables, spelled capital letters and pause
    marks; anything unspeakable (emoji, other scripts) is dropped.
    """
    spoken = _numbers_to_han(unicodedata.normalize("NFKC", text))
    # Imported here, not at the top: pypinyin's dictionaries hold ~55 MB, which a station
    # that never speaks text should not carry; the first render (in parallel with the
    # pre-tone) pays the import once.
    from pypinyin import Style, lazy_pinyin

    tokens = lazy_pinyin(
        spoken, style=Style.TONE3, neutral_tone_with_five=True, errors=_non_han_tokens
    )
    return _tidy(" ".join(tokens))


def _numbers_to_han(text: str) -> str:
    """Rewrite numbers, units and number-like notations as Chinese words."""
    text = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"百分之\1", text)
    text = re.sub(r"°\s*C", "摄氏度", text)
    text = re.sub(r"-(\d+(?:\.\d+)?)(?=摄氏度)", r"零下\1", text)
    text = re.sub(r"(?<!\d)(\d{1,2}):(\d{2})(?!\d)", _clock_time, text)
    text = re.sub(r"(拨打|电话|热线|呼叫|号码)(:?\s*)(\d+)", _hotline, text)
    text = re.sub(r"(?<=\d)\s*(km/h|mm/h|m/s|mm|cm|km|kg|m)(?![A-Za-z])", _unit, text)
    text = re.sub(r"(\d)\s*[-~–—]\s*(?=\d)", r"\1到", text)
    text = re.sub(r"(?<![\w.])-(?=\d)", "负", text)
    text = re.sub(r"\d{4}(?=\s*年)", lambda m: _digits(m.group(0), _YEAR_HAN), text)
    return re.sub(r"\d+(?:\.\d+)?", _number, text)


def _clock_time(m: re.Match[str]) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    return f"{hour}点{minute}分" if minute else f"{hour}点"


def _hotline(m: re.Match[str]) -> str:
    return m.group(1) + m.group(2) + _digits(m.group(3), _PHONE_HAN)


def _unit(m: re.Match[str]) -> str:
    return _UNITS[m.group(1)]


def _digits(digits: str, names: str) -> str:
    return "".join(names[int(d)] for d in digits)


def _number(m: re.Match[str]) -> str:
    whole, _, fraction = m.group(0).partition(".")
    spoken = _integer_words(whole)
    if fraction:
        spoken += "点" + _digits(fraction, _DIGIT_HAN)
    return spoken


def _integer_words(digits: str) -> str:
    """Chinese reading of an integer; digit by digit for codes, phone numbers, 0-prefixed."""
    if len(digits) >= 7 or (len(digits) > 1 and digits.startswith("0")):
        return _digits(digits, _DIGIT_HAN)
    value = int(digits)
    if value == 0:
        return "零"
    high, low = divmod(value, 10_000)
    words = _section_words(high) + "万" if high else ""
    if low:
        if high and low < 1000:
            words += "零"
        words += _section_words(low)
    return words[1:] if words.startswith("一十") else words


def _section_words(value: int) -> str:
    """Reading of 1 ≤ value ≤ 9999, with 零 for inner zero runs."""
    words, pending_zero = "", False
    for power, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = value // power % 10
        if digit == 0:
            pending_zero = bool(words)
            continue
        if pending_zero:
            words += "零"
            pending_zero = False
        words += _DIGIT_HAN[digit] + unit
    return words


def _non_han_tokens(chunk: str) -> str:
    """What pypinyin hands back for a run of non-Chinese text, made speakable."""
    out = []
    for ch in chunk:
        if ch in _PAUSES:
            out.append(_PAUSES[ch])
        elif ch.isascii() and ch.isalpha():
            out.append(ch.upper())
        elif ch.isascii() and ch.isdigit():
            out.append(_DIGIT_HAN[int(ch)])  # not reached: numbers were rewritten
        else:
            out.append(" ")
    return " ".join(out)


def _tidy(spoken: str) -> str:
    """Collapse spaces and pause runs; no pause at the start, no space before one."""
    spoken = re.sub(r"[ \t]+", " ", spoken)
    spoken = re.sub(r" ?([,;]|\.\n)", r"\1", spoken)
    spoken = re.sub(r"(?:[,;]|\.\n)+", _strongest_pause, spoken)
    spoken = re.sub(r"(?<=[,;])(?=\S)", " ", spoken)
    return spoken.lstrip(",;.\n ").rstrip(" ,;\n")


def _strongest_pause(m: re.Match[str]) -> str:
    run = m.group(0)
    if "\n" in run:
        return _SENTENCE_END
    return _LONG_PAUSE if ";" in run else _SHORT_PAUSE


class Tts:
    """espeak-ng speech, cached on disk by what is spoken.

    ``engine`` is the espeak-ng executable (``"none"`` disables TTS: every
    render raises TtsUnavailable). Renders are serialised by a lock; the first
    render of a text takes about 0.1–0.5 s, a cached one about a millisecond.
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
    ) -> None:
        self.cache_dir = cache_dir
        self.voice = voice
        self.engine = engine
        self.rate = rate
        self.speed_wpm = speed_wpm
        self.timeout_s = timeout_s
        self.max_cache_files = max_cache_files
        self._lock = threading.Lock()
        self._voice_checked = False

    def check(self) -> None:
        """Raise TtsUnavailable unless the engine runs and has ``voice``.

        espeak-ng silently falls back to its English voice for an unknown
        voice name, which would read pinyin as English letters; so the voice
        is looked up in ``--voices`` (name, language or file; ``+variant``
        ignored) before the first render.
        """
        if self.engine == "none":
            raise TtsUnavailable('text to speech is disabled (audio.tts = "none")')
        if self._voice_checked:
            return
        listing = self._engine_output(["--voices"]).splitlines()[1:]
        known = {field.casefold() for line in listing for field in line.split()[1:5]}
        if self.voice.split("+")[0].casefold() not in known:
            raise TtsUnavailable(f"{self.engine} has no voice {self.voice!r}")
        self._voice_checked = True

    def spoken_text(self, text: str) -> str:
        """What is fed to the engine: pinyin for a pinyin voice, else the text itself."""
        return to_pinyin(text) if "pinyin" in self.voice else text.strip()

    def cache_path(self, text: str) -> Path:
        """The cache file for ``text`` (SHA-256 of voice, speed and spoken text)."""
        key = json.dumps([self.voice, self.speed_wpm, self.spoken_text(text)], ensure_ascii=False)
        return self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()}.wav"

    def render(self, text: str) -> bytes:
        """``text`` spoken, as 16-bit mono PCM at ``rate``; raises TtsUnavailable."""
        spoken = self.spoken_text(text)
        if not spoken:
            return b""
        path = self.cache_path(text)
        with self._lock:
            self.check()
            wav = self._cached(path) or self._synthesise(spoken, path)
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

    def _synthesise(self, spoken: str, path: Path) -> bytes:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp")
            os.close(fd)
        except OSError as exc:
            raise TtsUnavailable(f"TTS cache {self.cache_dir} is not writable: {exc}") from exc
        try:
            self._run_engine(spoken, Path(tmp))
            wav = Path(tmp).read_bytes()
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        self._prune()
        return wav

    def _run_engine(self, spoken: str, out: Path) -> None:
        args = ["-v", self.voice, "-s", str(self.speed_wpm), "-w", str(out), "--stdin"]
        self._engine_output(args, spoken)
        if out.stat().st_size <= 44:
            raise TtsUnavailable(f"{self.engine} wrote no audio")

    def _engine_output(self, args: list[str], stdin: str = "") -> str:
        """Run the engine; its stdout, or TtsUnavailable with what went wrong."""
        try:
            done = subprocess.run(
                [self.engine, *args],
                input=stdin.encode(),
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except FileNotFoundError as exc:
            raise TtsUnavailable(f"TTS engine {self.engine!r} is not installed") from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TtsUnavailable(f"TTS engine {self.engine!r} failed: {exc}") from exc
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip()[:200]
            raise TtsUnavailable(f"{self.engine} exited with {done.returncode}: {detail}")
        return done.stdout.decode(errors="replace")

    def _prune(self) -> None:
        """Keep the newest ``max_cache_files`` renders (a hit refreshes a file's time)."""
        try:
            files = sorted(self.cache_dir.glob("*.wav"), key=lambda p: p.stat().st_mtime)
            for old in files[: max(0, len(files) - self.max_cache_files)]:
                old.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not prune the TTS cache %s: %s", self.cache_dir, exc)
