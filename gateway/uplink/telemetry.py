"""Telemetry messages: readings in batches, wrapped as docs/protocol.md §4 says.

Why this module exists: a telemetry message is ``{"station":…,"readings":[…]}`` with at most
``sync.batch_max`` readings and 256 KiB. The wrapping is written here once, and so is the
batching rule: the drain asks the store for batches already cut to it (`batch_max`,
`max_fragment_bytes`), and a resend's readings, which the store hands over as they are, are
cut by `Telemetry.messages`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

#: Largest telemetry payload (docs/protocol.md §4).
MAX_BATCH_BYTES = 256 * 1024
_SUFFIX = "]}"


class Telemetry:
    """Builds the telemetry messages of one station."""

    def __init__(self, station_id: str, batch_max: int) -> None:
        self.batch_max = batch_max
        self._prefix = f'{{"station":{json.dumps(station_id)},"readings":['
        #: Bytes of reading objects (each with its comma) that fit in one message.
        self.max_fragment_bytes = MAX_BATCH_BYTES - len(self._prefix) - len(_SUFFIX)

    def message(self, fragments: list[str]) -> bytes:
        """One telemetry message of these reading objects (JSON text, already within limits)."""
        return (self._prefix + ",".join(fragments) + _SUFFIX).encode()

    def messages(self, fragments: Iterable[str]) -> list[bytes]:
        """Reading objects as messages of at most `batch_max` readings and 256 KiB each."""
        messages: list[bytes] = []
        chunk: list[str] = []
        size = 0
        for fragment in fragments:
            if chunk and (
                len(chunk) >= self.batch_max or size + len(fragment) + 1 > self.max_fragment_bytes
            ):
                messages.append(self.message(chunk))
                chunk, size = [], 0
            chunk.append(fragment)
            size += len(fragment) + 1
        if chunk:
            messages.append(self.message(chunk))
        return messages
