"""The broadcast queue's callbacks, on a thread of their own, in the order things happened.

Why this module exists: a receipt is a SQLite commit and the gateway's callbacks may be slow or
raise; the worker that writes sound and the caller of ``submit`` must never wait for them. So
the queue (audio/broadcast_queue.py) only puts each report here, and one notifier thread calls
``on_status``, ``on_fault`` and ``on_state`` one after another; an exception is logged, never
fatal.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from audio.broadcast import StatusCallback

log = logging.getLogger(__name__)


class Reports:
    """Calls the gateway's callbacks on the notifier thread, in order."""

    def __init__(
        self,
        on_status: StatusCallback,
        on_fault: Callable[[str], None],
        on_state: Callable[[str], None] | None,
    ) -> None:
        self._on_status = on_status
        self._on_fault = on_fault
        self._on_state = on_state
        self._events: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="broadcast-notify", daemon=True)
        self._thread.start()

    def status(self, broadcast_id: str, status: str, extra: dict[str, object]) -> None:
        """A broadcast's step: ``queued``, ``playing``, ``played``, ``failed``..."""
        callback = self._on_status
        self._events.put(lambda: callback(broadcast_id, status, extra))

    def fault(self, reason: str) -> None:
        """The sound device or the amplifier failed."""
        callback = self._on_fault
        self._events.put(lambda: callback(reason))

    def state(self, state: str) -> None:
        """The queue's state changed (``idle``, ``playing``, ``fault``)."""
        if self._on_state is not None:
            callback = self._on_state
            self._events.put(lambda: callback(state))

    def close(self, timeout_s: float) -> None:
        """Deliver what is reported so far, then end the thread."""
        self._events.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (event := self._events.get()) is not None:
            try:
                event()
            except Exception:
                log.exception("a broadcast status callback failed")
