"""The speech of a broadcast as the worker plays it, and the receipt reason when it fails.

Why this module exists: a broadcast's speech is either PCM rendered in one go (a clip, inline
audio, a programme's TTS) or text rendered piece by piece (`audio.speech.SpeechStream`). The
worker (audio/broadcast_worker.py) starts rendering before the amplifier's warm-up and the tone,
and plays each piece as it comes; this module gives both kinds that one shape, and turns a
rendering error into the receipt's reason (``unknown_clip``, ``bad_audio``,
``tts_unavailable``), which no retry would change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from audio.broadcast import Broadcast
from audio.clips import BadAudio, UnknownClip
from audio.speech import SpeechStream
from audio.tts import TtsUnavailable

log = logging.getLogger(__name__)


class RenderedSpeech:
    """The speech of one broadcast, rendered once (inline or in a helper thread).

    A render that fails sets ``abort``, so a tone playing meanwhile stops at
    once instead of announcing a message that cannot follow.
    """

    def __init__(self, render: Callable[[], bytes], abort: threading.Event) -> None:
        self._render = render
        self._abort = abort
        self._done = threading.Event()
        self._started = False
        self.pcm = b""
        self.error: BaseException | None = None
        self.voice_fallback = False

    def start(self, *, in_thread: bool) -> None:
        if self._started:
            return
        self._started = True
        if in_thread:
            threading.Thread(target=self._run, name="speech-render", daemon=True).start()
        else:
            self._run()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def pieces(self, play: int, wait_s: float = 0.02) -> Iterator[bytes | None]:
        """The whole PCM once rendered (``None`` while waiting); raises the render's error."""
        del play
        while not self._done.wait(wait_s):
            yield None
        if self.error is not None:
            raise self.error
        yield self.pcm

    def _run(self) -> None:
        try:
            self.pcm = self._render()
        except BaseException as exc:
            self.error = exc
            self._abort.set()
        finally:
            self._done.set()


EntrySpeech = RenderedSpeech | SpeechStream
"""What the worker plays as a broadcast's speech."""


def speech_of(b: Broadcast, abort: threading.Event) -> EntrySpeech | None:
    """What plays the broadcast's speech: a text stream as it is, PCM through RenderedSpeech."""
    if isinstance(b.speech, SpeechStream):
        b.speech.attach_abort(abort)
        return b.speech
    return RenderedSpeech(b.speech, abort) if b.speech is not None else None


class BroadcastFailed(Exception):
    """A broadcast cannot play; ``reason`` is the receipt's reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


_SPEECH_ERRORS: dict[type[BaseException], str] = {
    UnknownClip: "unknown_clip",
    BadAudio: "bad_audio",
    TtsUnavailable: "tts_unavailable",
}


def speech_failure(error: BaseException) -> BroadcastFailed:
    """The receipt reason for a speech error."""
    for kind, reason in _SPEECH_ERRORS.items():
        if isinstance(error, kind):
            return BroadcastFailed(reason, str(error))
    log.error("speech rendering raised %r", error)
    return BroadcastFailed("bad_audio", repr(error))


def wait_rendered(speech: EntrySpeech) -> None:
    """Wait for the speech; BroadcastFailed with the receipt reason if rendering failed."""
    speech.wait(timeout=3600)
    if speech.error is not None:
        raise speech_failure(speech.error)
