"""Which espeak-ng voice says a message's language (docs/protocol.md §9, docs/config.md).

A language (BCP 47, from the alert's ``language`` or the CAP ``<info>``'s) is
looked up, most specific first (``fr-CA``, then ``fr``):

1. Chinese (``zh…``, ``cmn…``): the configured voice (``audio.tts_voice``,
   ``cmn-latn-pinyin``), fed pinyin;
2. ``audio.tts_voices``, a map from language prefixes to voices
   (``{ en = "en-us", fr = "fr-fr" }``);
3. espeak-ng's own list (``espeak-ng --voices``): a voice whose language is the
   tag, or which lists the tag among its other languages (the lowest priority
   number wins, as espeak-ng itself decides: ``fr`` → ``fr-fr``).

A language none of these know (``sp-US``, a typo, a language espeak-ng lacks)
is spoken the Chinese way by the configured voice, Latin words by the English
voice, and the choice says ``fallback`` so the ``played`` receipt can tell the
centre (``"voice_fallback": true``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from audio.speech_text import is_chinese
from audio.tts import Tts, TtsUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoiceChoice:
    """The voice for a language; ``chinese``: the pinyin path; ``fallback``: no voice had it."""

    voice: str
    chinese: bool
    fallback: bool = False


class Voices:
    """Voice choice for languages, over one engine's voice list and the configured map."""

    def __init__(self, tts: Tts, configured: Mapping[str, str] | None = None) -> None:
        self.tts = tts
        self.configured = {k.casefold().replace("_", "-"): v for k, v in (configured or {}).items()}
        self._chosen: dict[str, VoiceChoice] = {}

    def choose(self, language: str) -> VoiceChoice:
        """The voice for ``language``; raises TtsUnavailable only if the engine cannot run."""
        tag = language.strip().replace("_", "-").casefold()
        if is_chinese(tag):
            return VoiceChoice(self.tts.voice, chinese=True)
        if tag not in self._chosen:
            voice = self._lookup(tag)
            if voice is None:
                log.warning("no voice for language %r: spoken by %s", language, self.tts.voice)
                self._chosen[tag] = VoiceChoice(self.tts.voice, chinese=True, fallback=True)
            else:
                self._chosen[tag] = VoiceChoice(voice, chinese=False)
        return self._chosen[tag]

    def english(self) -> str | None:
        """The voice for Latin words inside Chinese text, if there is one."""
        try:
            choice = self.choose("en")
        except TtsUnavailable:
            return None
        return None if choice.fallback else choice.voice

    def _lookup(self, tag: str) -> str | None:
        subtags = tag.split("-")
        prefixes = ["-".join(subtags[:n]) for n in range(len(subtags), 0, -1) if subtags[0]]
        for prefix in prefixes:
            voice = self.configured.get(prefix)
            if voice is None:
                continue
            if self.tts.has_voice(voice):
                return voice
            log.warning(
                "audio.tts_voices: %s has no voice %r for %r", self.tts.engine, voice, prefix
            )
        listing = _parse_listing(self.tts.voice_listing())
        for prefix in prefixes:
            ranked = [
                (rank, lang)
                for lang, ranks in listing.items()
                if (rank := ranks.get(prefix)) is not None
            ]
            if ranked:
                return min(ranked)[1]
        return None


def _parse_listing(listing: str) -> dict[str, dict[str, int]]:
    """espeak-ng --voices as {voice language: {language it speaks: priority}}.

    A line is ``Pty Language Age/Gender VoiceName File (other 5)(langs 3)``; the
    voice's own language ranks 0, the others by their number.
    """
    voices: dict[str, dict[str, int]] = {}
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        language = fields[1].casefold()
        ranks = voices.setdefault(language, {language: 0})
        others = " ".join(fields[5:]).replace(")(", ") (").split()
        for name, number in zip(others[::2], others[1::2], strict=False):
            lang, digits = name.strip("(").casefold(), number.strip(")")
            if digits.isdigit():
                ranks.setdefault(lang, int(digits))
    return voices
