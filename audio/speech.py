"""A text message as speech: rendered piece by piece while it plays (docs/protocol.md §9).

:class:`Speaker` turns (text, language) into a :class:`SpeechStream` for the
broadcast queue. The stream renders in a thread of its own, through the engine
at a lower CPU priority (audio/tts.py), in this order:

1. the first piece (the first ~2 s of text), so that with no pre-tone the first
   sound waits only for that;
2. the rest of the first play, sentence by sentence, while the first plays;
3. what the repeats say: everything again, unless the first play lasted longer
   than ``repeat_full_max_s``: then only the headline and the instruction (a
   CAP alert) or the first and the last sentence (any other text).

The queue takes ``pieces(play)``, which yields each piece's PCM as soon as it
exists (``None`` while it waits), so sound already due is never held up by a
render. Segments of one piece in different voices (a Latin word inside Chinese
text) are joined with their silent edges trimmed and 5 ms fades, so the voice
switch makes no click. A preempted broadcast keeps its pieces for the replay.
"""

from __future__ import annotations

import array
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from audio.pcm import SAMPLE_WIDTH, duration_s, silence
from audio.speech_text import Segment, pieces, segments, summary
from audio.tts import Tts, TtsUnavailable
from audio.voices import VoiceChoice, Voices

log = logging.getLogger(__name__)

#: A sample quieter than this is silence when trimming the edges of a segment.
_QUIET = 300
_FADE_S = 0.005
_JOIN_GAP_S = 0.06


@dataclass(frozen=True)
class SpeechText:
    """What a message says. ``parts``: CAP (headline, description, instruction), if CAP."""

    text: str
    language: str = "zh-CN"
    parts: tuple[str, str, str] | None = None


class Speaker:
    """Builds speech streams over one Tts and its voice choice."""

    def __init__(self, tts: Tts, voices: Voices, *, repeat_full_max_s: float = 45.0) -> None:
        self.tts = tts
        self.voices = voices
        self.repeat_full_max_s = repeat_full_max_s

    def stream(self, message: SpeechText) -> SpeechStream:
        """A stream for ``message`` (nothing is rendered until the queue starts it)."""
        return SpeechStream(self, message)

    def plan(self, message: SpeechText) -> tuple[VoiceChoice, list[str], list[str]]:
        """(voice, pieces of the first play, pieces of a shortened repeat)."""
        choice = self.voices.choose(message.language)
        chinese = choice.chinese
        parts = message.parts
        if parts is not None and "\n".join(p for p in parts if p) != message.text:
            parts = None  # not the parts of this text (a resumed alert whose encoding changed)
        if parts is not None:
            headline, description, instruction = parts
            full = [p for part in parts for p in pieces(part, chinese=chinese)]
            short_text = "\n".join(p for p in (headline, instruction) if p.strip())
            short = pieces(short_text or summary(description, chinese=chinese), chinese=chinese)
        else:
            full = pieces(message.text, chinese=chinese)
            short = pieces(summary(message.text, chinese=chinese), chinese=chinese)
        return choice, full, short

    def render_piece(
        self, piece: str, choice: VoiceChoice, language: str, *, urgent: bool = False
    ) -> bytes:
        """One piece as PCM: its segments rendered and joined without clicks.

        ``urgent``: the first sound waits for it (audio/engine_spares.py).
        """
        english = self.voices.english() if choice.chinese else None
        cut = segments(piece, chinese=choice.chinese, language=language, english=bool(english))
        rendered = [self._render_segment(s, choice, english, urgent) for s in cut]
        rendered = [pcm for pcm in rendered if pcm]
        if len(rendered) <= 1:
            return rendered[0] if rendered else b""
        return join(rendered, self.tts.rate)

    def _render_segment(
        self, segment: Segment, choice: VoiceChoice, english: str | None, urgent: bool
    ) -> bytes:
        if segment.chinese:
            return self.tts.render(segment.text, self.tts.voice, urgent=urgent)
        voice = choice.voice if not choice.chinese else (english or self.tts.voice)
        return self.tts.render_spoken(voice, segment.text, urgent=urgent)


class SpeechStream:
    """One message's speech, rendered in the background in play order (module docstring)."""

    def __init__(self, speaker: Speaker, message: SpeechText) -> None:
        self._speaker = speaker
        self._message = message
        self._cond = threading.Condition()
        self._first: list[bytes] = []
        self._repeat: list[bytes] | None = None
        self._finished = False
        self._started = False
        self._stopped = False
        self._abort: threading.Event | None = None
        self.voice_fallback = False
        self.error: BaseException | None = None

    def attach_abort(self, abort: threading.Event) -> None:
        """The event to set when rendering fails (stops a tone announcing nothing)."""
        self._abort = abort

    def start(self, *, in_thread: bool = True) -> None:
        """Start rendering (once); ``in_thread=False`` renders everything now."""
        with self._cond:
            if self._started:
                return
            self._started = True
        if in_thread:
            threading.Thread(target=self._run, name="speech-render", daemon=True).start()
        else:
            self._run()

    def fresh(self) -> SpeechStream:
        """A new stream of the same message, nothing rendered yet (a replay renders anew)."""
        return SpeechStream(self._speaker, self._message)

    def stop(self) -> None:
        """Render no more pieces (the broadcast is over); what is rendered stays."""
        with self._cond:
            self._stopped = True

    def done(self) -> bool:
        """Whether everything is rendered (or rendering failed)."""
        with self._cond:
            return self._finished

    def wait(self, timeout: float) -> bool:
        """Wait until everything is rendered; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._finished, timeout)

    def pieces(self, play: int, wait_s: float = 0.02) -> Iterator[bytes | None]:
        """PCM of each piece of play ``play`` (0 = first) in order; ``None`` while waiting.

        Raises the rendering error, if rendering failed before the end.
        """
        index = 0
        while True:
            with self._cond:
                ready = self._first if play == 0 else self._repeat
                if ready is not None and index < len(ready):
                    pcm: bytes | None = ready[index]
                    index += 1
                elif self._finished:
                    if self.error is not None:
                        raise self.error
                    return
                else:
                    self._cond.wait(wait_s)
                    pcm = None
            yield pcm

    def _add(self, pcm: bytes, target: list[bytes]) -> None:
        with self._cond:
            if self._stopped:
                raise _Stopped
            if pcm:
                target.append(pcm)
                self._cond.notify_all()

    def _run(self) -> None:
        # The heavy work runs in the niced engine (audio/tts.py). This thread is not niced
        # itself: it takes the GIL, and a descheduled low-priority holder would hold up the
        # threads that play and preempt (priority inversion).
        try:
            self._render()
        except _Stopped:
            pass
        except BaseException as exc:  # reported through pieces(), never lost in a thread
            with self._cond:
                self.error = exc
            if self._abort is not None:
                self._abort.set()
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _render(self) -> None:
        speaker, message = self._speaker, self._message
        choice, full, short = speaker.plan(message)
        self.voice_fallback = choice.fallback
        for index, piece in enumerate(full):
            pcm = speaker.render_piece(piece, choice, message.language, urgent=index == 0)
            self._add(pcm, self._first)
        if not self._first and message.text.strip() and not choice.chinese:
            # The language's voice made nothing of it: let the configured voice try.
            choice = VoiceChoice(speaker.tts.voice, chinese=True, fallback=True)
            self.voice_fallback = True
            for piece in pieces(message.text, chinese=True):
                self._add(speaker.render_piece(piece, choice, message.language), self._first)
        if not self._first:
            raise TtsUnavailable("no voice can say anything of this text")
        first_s = sum(duration_s(pcm, speaker.tts.rate) for pcm in self._first)
        if first_s <= speaker.repeat_full_max_s or short == full:
            with self._cond:
                self._repeat = self._first
            return
        repeat: list[bytes] = []
        with self._cond:
            self._repeat = repeat
        for piece in short:
            self._add(speaker.render_piece(piece, choice, message.language), repeat)


class _Stopped(Exception):
    """The broadcast is over: rendering stops."""


def join(parts: Sequence[bytes], rate: int) -> bytes:
    """Segments joined with quiet edges trimmed, 5 ms fades and a short gap: no clicks."""
    gap = silence(_JOIN_GAP_S, rate)
    return gap.join(_faded(_trimmed(pcm), rate) for pcm in parts)


def _trimmed(pcm: bytes) -> array.array[int]:
    samples = array.array("h", pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH])
    start, end = 0, len(samples)
    while start < end and abs(samples[start]) < _QUIET:
        start += 1
    while end > start and abs(samples[end - 1]) < _QUIET:
        end -= 1
    return samples[start:end]


def _faded(samples: array.array[int], rate: int) -> bytes:
    n = min(len(samples) // 2, max(1, round(_FADE_S * rate)))
    for i in range(n):
        gain = i / n
        samples[i] = int(samples[i] * gain)
        samples[-1 - i] = int(samples[-1 - i] * gain)
    return samples.tobytes()
