"""Chinese text as tone-numbered pinyin that espeak-ng's ``cmn-latn-pinyin`` voice reads.

espeak-ng's ``cmn`` dictionary lacks many characters that warnings are made of
(注, 意, 洪, 警 …) and spells them out as English letters. So Chinese text is
first turned into tone-numbered pinyin with pypinyin (offline, phrase-aware for
polyphones such as 银行/行走) and spoken with the ``cmn-latn-pinyin`` voice,
which reads pinyin syllables natively.

:func:`to_pinyin` also makes the rest of a real warning speakable: numbers
become Chinese numerals (espeak reads 10000 as 十千), years and hotlines are
read digit by digit (二〇二六年, 拨打幺幺九), ``3.5`` → 三点五, ``50%`` →
百分之五十, ``°C`` → 摄氏度, ``3-5`` → 三到五, Latin letters are spelled
(``CO`` → C O), and punctuation becomes pauses (``,`` short, ``;`` longer, a
full stop a sentence break). Latin *words* inside Chinese text are not this
module's business: audio/speech_text.py cuts them out for the English voice.
"""

from __future__ import annotations

import re
import unicodedata

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
