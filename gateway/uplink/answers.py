"""Answers to the centre's commands that wait for a link: responses and resend ranges.

Why this module exists: a command (docs/protocol.md §8) is answered in the event loop, but
the answer goes out on whichever link is up, in that link's thread, possibly a later one.
`Answers` is what the two share: responses kept until the broker has acknowledged them (one
made while the broker is away, or published on a link that died before its PUBACK, goes out
again on the next connection), and the ranges of records to publish again.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

log = logging.getLogger(__name__)

#: Command responses kept until the broker acknowledges them (the newest are kept).
MAX_RESPONSES = 100


class Answers:
    """Command responses and resend ranges waiting for a link (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._responses: dict[int, bytes] = {}
        self._tokens = 0
        self._resends: deque[tuple[int, int]] = deque()

    def add_response(self, payload: bytes) -> None:
        """Keep a response until a link has published it and the broker acknowledged it."""
        with self._lock:
            self._tokens += 1
            self._responses[self._tokens] = payload
            while len(self._responses) > MAX_RESPONSES:
                del self._responses[next(iter(self._responses))]
                log.warning("command response dropped: more than %d unsent", MAX_RESPONSES)

    def unsent_responses(self, out: set[int]) -> list[tuple[int, bytes]]:
        """Responses (token, payload) not among the tokens `out` a link has published."""
        with self._lock:
            return [(token, data) for token, data in self._responses.items() if token not in out]

    def response_acknowledged(self, token: int) -> None:
        """The broker has acknowledged the response `token`: forget it."""
        with self._lock:
            self._responses.pop(token, None)

    def add_resend(self, span: tuple[int, int]) -> None:
        """Publish the records from span[0] to span[1] again."""
        self._resends.append(span)

    def next_resend(self) -> tuple[int, int] | None:
        """The oldest range still to publish again, taken off the queue."""
        try:
            return self._resends.popleft()
        except IndexError:
            return None

    def put_back_resend(self, span: tuple[int, int]) -> None:
        """A link ended in the middle of `span`: the next one starts with it."""
        self._resends.appendleft(span)
