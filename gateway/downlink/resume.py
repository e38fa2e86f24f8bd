"""After a restart, the alert log's unfinished broadcasts play again (docs/protocol.md §9).

Why this module exists: a crash or power cut can end the process while alerts wait in the
queue or play. Every accepted alert is in the alert log before its first receipt, so at start
each unfinished, unexpired entry is queued again — a central alert parsed from the payload it
arrived as, a local alarm from its record — and an expired one is answered `expired`.
Programmes are the scheduler's to resume, and a microphone use ended with the process. A
command logged but never answered is closed, not run: the centre saw no answer and may send
a new one, and running it twice is worse.
"""

from __future__ import annotations

import logging

from audio.broadcast_queue import BroadcastQueue
from gateway.downlink.broadcasts import Broadcasts, stored_alert
from gateway.downlink.local_alarms import LocalAlarms
from gateway.downlink.receipts import Receipts
from gateway.downlink.time_floor import TimeFloor
from gateway.store.outbox import Store

log = logging.getLogger(__name__)


def resume(
    store: Store,
    queue: BroadcastQueue,
    *,
    floor: TimeFloor,
    receipts: Receipts,
    broadcasts: Broadcasts,
    local_alarms: LocalAlarms,
) -> None:
    """Queue again every unfinished, unexpired broadcast of the alert log; answer the rest."""
    for entry in store.alerts.unfinished():
        broadcast_id, record = entry.id, entry.record
        if record.kind in ("programme", "microphone"):
            continue  # the scheduler resumes programmes; a microphone use ended with the process
        if record.kind == "command":
            # Crashed between logging a command and answering it: the centre sees no
            # answer and may send a new command; running it twice is worse.
            store.alerts.set_state(broadcast_id, "done")
            continue
        if record.expires_ms <= floor.now_ms():
            store.alerts.set_state(broadcast_id, "expired")
            receipts.entry_receipt(broadcast_id, "expired", {})
            continue
        log.info("resuming broadcast %s after a restart", broadcast_id)
        if record.kind == "local":
            local_alarms.submit(broadcast_id, record)
            continue
        try:
            alert = stored_alert(record)
            cap = record.payload if record.format == "cap" else None
            speech = broadcasts.speech(alert, broadcast_id, check=False, cap_payload=cap)
        except Exception as exc:  # the stored alert was valid when accepted
            log.error("cannot resume %s: %s", broadcast_id, exc)
            store.alerts.set_state(broadcast_id, "failed")
            receipts.entry_receipt(broadcast_id, "failed", {"reason": "bad_payload"})
            continue
        queue.submit(broadcasts.alert(broadcast_id, alert, record.sound_level, record, speech))
