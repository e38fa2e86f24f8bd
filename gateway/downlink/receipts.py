"""Receipts (docs/protocol.md §7): every step of an alert-log entry, stored for the centre.

Why this module exists: alerts, local alarms, programmes and the broadcast queue's progress
all end in the same act — store a receipt (the store wakes the uplink), note it as the
answer to the message being handled (gateway/downlink/answered.py), log it, and tell the
demo's screen. A receipt about an alert-log entry names the alert's own id, not the key's
entry id (gateway/downlink/alert_ids.py), and says `clock_unsynced` when the alert was
accepted while the clock was unsynced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gateway.downlink.alert_ids import public_id
from gateway.downlink.answered import AnsweredLog
from gateway.store.outbox import Store

log = logging.getLogger(__name__)

#: Told of every receipt as it is stored: (alert id, status, fields).
ReceiptListener = Callable[[str, str, dict[str, Any]], None]


class Receipts:
    """Stores receipts, and turns the broadcast queue's progress into them."""

    def __init__(self, store: Store, answered: AnsweredLog, told: ReceiptListener) -> None:
        self.store = store
        self.answered = answered
        self.told = told
        #: Entries accepted while the clock was unsynced: their receipts say so.
        self.unsynced: set[str] = set()
        # References an update/cancel stopped: the queue reports them `cancelled`, but the
        # receipt the alert intake already wrote (`superseded` or `cancelled`) is the one that counts.
        self.replaced: set[str] = set()

    def receipt(
        self, alert_id: str, status: str, fields: dict[str, Any], *, defer: bool = False
    ) -> None:
        """Store a receipt naming `alert_id` as it is (an alert's, a programme's, a local id)."""
        self.answered.note(alert_id)
        self.store.add_receipt(alert_id, status, fields, defer=defer)  # the store wakes the uplink
        self._say(alert_id, status, fields)

    def received(self, alert_id: str, fields: dict[str, Any]) -> None:
        """The `received` receipt the store wrote with the alert-log entry: noted and told."""
        self.answered.note(alert_id)
        self._say(alert_id, "received", fields)

    def entry_receipt(
        self, entry: str, status: str, fields: dict[str, Any], *, defer: bool = False
    ) -> None:
        """A receipt about an alert-log entry (it names the alert's own id, not the key's)."""
        if entry in self.unsynced:
            fields["clock_unsynced"] = True
        self.receipt(public_id(entry), status, fields, defer=defer)

    def _say(self, alert_id: str, status: str, fields: dict[str, Any]) -> None:
        """Say that a receipt is stored: in the log, and to the listener."""
        log.info("receipt %s %s %s", alert_id, status, fields or "")
        self.told(alert_id, status, fields)

    def progress(self, entry: str, status: str, extra: dict[str, Any]) -> bool:
        """A step of a queued broadcast: its alert-log state and receipt; False if none is due."""
        if entry in self.replaced and status == "cancelled":
            self.replaced.discard(entry)
            return False
        self.store.alerts.set_state(entry, status)
        # `queued` rides with the next commit, normally `playing` a moment later: one fsync
        # less before the first sound (docs/performance.md).
        self.entry_receipt(entry, status, dict(extra), defer=status == "queued")
        return True
