"""What is said, in which order and by which voice: sentences, script segments, readings.

A message's text reaches the loudspeakers as a list of *pieces* (about a
sentence each, so the first one can play while the rest renders), and each
piece as one or more *segments*, each for one voice (docs/protocol.md §9):

- Chinese text keeps the pinyin path (audio/pinyin.py). Inside it a Latin
  *word* (``Flash``, ``WiFi``) is cut out for the English voice, which says it
  as a word; an *acronym* (``CO``, ``PM2.5``, ``NWS``: capitals, at most five,
  perhaps with digits) stays in the Chinese segment, where it is spelled.
- Text in another language goes to that language's voice; a run of Chinese
  characters inside it goes to the Chinese voice.
- Before a non-Chinese voice sees its text, the notations espeak-ng reads badly
  are rewritten in that language's words: times (``4:07AM`` → ``4 oh 7 AM``,
  ``16h30`` → ``16 heures 30``), ranges (``1-2`` → ``1 to 2``), units
  (``km/h``, ``mm``, ``°C``) and bullet marks. espeak-ng reads the rest
  (numbers, ``MDT``, ``U.S.``) well on its own: ``espeak-ng -x -q`` shows it.

Nothing here runs the engine; audio/speech.py renders what this module cuts.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

#: The first piece is cut to about this many characters (~2 s of speech) when its
#: sentence is longer, so that the first sound does not wait for a long render.
FIRST_PIECE_CHARS = {"latin": 40, "han": 10}
#: Text beyond this is not spoken (an hour of speech would be ~100 MB of PCM).
MAX_SPOKEN_CHARS = 6000

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN_RUN = re.compile(rf"[{_HAN}]+")
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
_ZH_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|\n+")
_LATIN_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[^a-z\s])")
_LATIN_CLAUSE = re.compile(r"[,;:]\s+")
_ZH_CLAUSE = re.compile(r"(?<=[，、；：,;:])")


@dataclass(frozen=True)
class Segment:
    """Text for one voice. ``chinese``: goes through pinyin (the Chinese voice)."""

    text: str
    chinese: bool


def is_chinese(language: str) -> bool:
    """Whether ``language`` (BCP 47) is Chinese: the pinyin path."""
    primary = language.strip().replace("_", "-").split("-")[0].casefold()
    return primary in ("zh", "cmn")


def sentences(text: str, *, chinese: bool) -> list[str]:
    """``text`` cut into sentences (Latin text's hard line wraps joined first)."""
    text = unicodedata.normalize("NFC", text)
    if chinese:
        parts = _ZH_SENTENCE_END.split(text)
    else:
        parts = []
        for paragraph in re.split(r"\n\s*\n", text):
            parts += _LATIN_SENTENCE_END.split(" ".join(paragraph.split()))
    return [p.strip() for p in parts if p and p.strip()]


def first_piece(sentence: str, *, chinese: bool) -> tuple[str, str]:
    """``sentence`` cut into (about 2 s of speech, the rest) at a clause or word boundary."""
    limit = FIRST_PIECE_CHARS["han" if chinese else "latin"]
    if len(sentence) <= limit * 3 // 2:
        return sentence, ""
    clause = _ZH_CLAUSE if chinese else _LATIN_CLAUSE
    cuts = [m.end() for m in clause.finditer(sentence) if 0 < m.end() <= limit]
    if not cuts and not chinese:
        cuts = [m.start() for m in re.finditer(r"\s", sentence) if 0 < m.start() <= limit]
    if not cuts and chinese:
        # Not inside a Latin word or a number (``PM2.5``), which would be read in halves.
        cuts = [i for i in range(1, limit + 1) if not _in_token(sentence, i)][-1:]
    if not cuts:
        return sentence, ""
    cut = cuts[-1]
    return sentence[:cut].strip(), sentence[cut:].strip()


def _in_token(text: str, i: int) -> bool:
    """Whether position ``i`` falls between two characters of one Latin word or number."""
    token = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789."
    return text[i - 1] in token and text[i] in token


def pieces(text: str, *, chinese: bool, max_chars: int = MAX_SPOKEN_CHARS) -> list[str]:
    """The pieces ``text`` is rendered in: the first ~2 s, then sentence by sentence."""
    found = sentences(text[:max_chars], chinese=chinese)
    if not found:
        return []
    head, rest = first_piece(found[0], chinese=chinese)
    return [head] + ([rest] if rest else []) + found[1:]


def summary(text: str, *, chinese: bool) -> str:
    """The first and the last sentence (what a JSON alert's repeats say when it is long)."""
    found = sentences(text, chinese=chinese)
    if len(found) <= 2:
        return "\n".join(found)
    return "\n".join((found[0], found[-1]))


def segments(piece: str, *, chinese: bool, language: str, english: bool) -> list[Segment]:
    """``piece`` cut by script into segments, each with what its voice is to be given.

    ``chinese``: the piece goes the Chinese way (Latin words cut out for the English
    voice when ``english``); else it is for ``language``'s voice, Han runs cut out.
    """
    if chinese:
        cuts = _latin_word_runs(piece) if english else []
        return _cut(piece, cuts, inner_chinese=False, outer_chinese=True, language="en")
    cuts = [(m.start(), m.end()) for m in _HAN_RUN.finditer(piece)]
    return _cut(piece, cuts, inner_chinese=True, outer_chinese=False, language=language)


def _cut(
    piece: str,
    cuts: list[tuple[int, int]],
    *,
    inner_chinese: bool,
    outer_chinese: bool,
    language: str,
) -> list[Segment]:
    out: list[Segment] = []
    at = 0
    for start, end in cuts:
        out.append(_segment(piece[at:start], outer_chinese, language))
        out.append(_segment(piece[start:end], inner_chinese, language))
        at = end
    out.append(_segment(piece[at:], outer_chinese, language))
    return [s for s in out if s.text.strip(" ,.;:!?-–—*，。、；：！？")]


def _segment(text: str, chinese: bool, language: str) -> Segment:
    return Segment(text.strip() if chinese else reading(text, language), chinese)


def _is_acronym(word: str) -> bool:
    return (word.isupper() and len(word) <= 5) or len(word) == 1


def _latin_word_runs(piece: str) -> list[tuple[int, int]]:
    """Spans of Latin words (not acronyms) in Chinese text, neighbours joined by spaces."""
    runs: list[tuple[int, int]] = []
    for m in _LATIN_WORD.finditer(piece):
        word = m.group(0)
        follows_digit = m.end() < len(piece) and piece[m.end()].isdigit()
        if _is_acronym(word) or follows_digit:
            continue
        if runs and re.fullmatch(r"[ \t-]*", piece[runs[-1][1] : m.start()]):
            runs[-1] = (runs[-1][0], m.end())
        else:
            runs.append((m.start(), m.end()))
    return runs


# -- readings for voices other than Chinese ------------------------------------------------


def reading(text: str, language: str) -> str:
    """``text`` with times, ranges, units and bullets written as ``language`` reads them."""
    primary = language.strip().replace("_", "-").split("-")[0].casefold()
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"(?:(?<=\s)|^)[*•]+\s*", "", text)  # bullet marks
    text = re.sub(r"\.{3,}|…", ", ", text)
    if primary == "en":
        text = _english(text)
    elif primary == "fr":
        text = _french(text)
    return " ".join(text.split()).strip(" ,")


_EN_UNITS = {
    "km/h": "kilometers per hour",
    "mm": "millimeters",
    "cm": "centimeters",
    "km": "kilometers",
    "°C": "degrees Celsius",
    "°F": "degrees Fahrenheit",
}
_FR_UNITS = {"km/h": "kilomètres heure", "°C": "degrés Celsius"}


def _units(text: str, units: dict[str, str]) -> str:
    names = "|".join(re.escape(u) for u in sorted(units, key=len, reverse=True))
    return re.sub(rf"(?<=\d)\s*({names})(?![A-Za-z])", lambda m: " " + units[m.group(1)], text)


def _english(text: str) -> str:
    def clock(m: re.Match[str]) -> str:
        hour, minute, seconds, half = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        half = f" {half[0].upper()} M" if half else ""
        if seconds:
            said = f"{hour} {_english_minute(minute)} and {int(seconds)} seconds"
        elif minute == "00":
            said = hour if half else f"{hour} o'clock"
        else:
            said = f"{hour} {_english_minute(minute)}"
        return said + half

    text = re.sub(
        r"\b(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:\s*([AaPp]\.?[Mm]\b\.?))?", clock, text
    )
    text = re.sub(r"\b(\d{1,2})\s*([AaPp])\.?[Mm]\b\.?", r"\1 \2 M", text)
    text = re.sub(r"(?<=\d)\s*[-–]\s*(?=\d)", " to ", text)
    return _units(text, _EN_UNITS)


def _english_minute(minute: str) -> str:
    if minute == "00":
        return "hundred"
    return f"oh {minute[1]}" if minute.startswith("0") else minute


def _french(text: str) -> str:
    text = re.sub(
        r"\b(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?",
        lambda m: (
            f"{m.group(1)} heures {int(m.group(2))}"
            + (f" et {int(m.group(3))} secondes" if m.group(3) else "")
        ),
        text,
    )
    text = re.sub(r"\b(\d{1,2})\s*h\s*(\d{2})\b", r"\1 heures \2", text)
    text = re.sub(r"\b(\d{1,2})\s*h\b", r"\1 heures", text)
    text = re.sub(r"(?<=\d)\s*[-–]\s*(?=\d)", " à ", text)
    return _units(text, _FR_UNITS)
