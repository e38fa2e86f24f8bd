"""Scenario 4: the database's disk fills up; the service rides it out and reports what it dropped.

The database lives on a 4 MiB tmpfs that a ballast file fills to ENOSPC (harness/tmpfs.py).
A JSON-lines node counts 0, 1, 2, … at 1,000 readings/s all along. While the disk is full an
alert must still play; with the broker away too, readings pile up in memory beyond its bound
(lowered to 3,000 readings for the test) and the overflow must be reported as ``data_dropped``.
When space returns, everything committed must reach the centre, the dropped count must match
exactly the values that never arrived, and the database must pass `PRAGMA integrity_check`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.faults import full_disk
from harness.tmpfs import SmallDisk
from tests.faults.conftest import report


def test_a_full_disk_keeps_the_service_running_and_every_loss_reported(tmp_path: Path) -> None:
    reason = SmallDisk.available(tmp_path)
    if reason is not None:
        pytest.skip(f"cannot mount a small tmpfs: {reason}")
    result = full_disk(tmp_path, full_s=5)
    text = report(result)
    details = result.details
    assert details["running_while_full"], text
    assert details["alert_on_full_disk_heard"], text
    assert details["alert_receipts"] == ["received", "queued", "playing", "played"], text
    assert details["dropped_reported"] > 0, text  # the memory bound was really reached
    assert all(e["reason"] == "disk_full" for e in details["data_dropped_events"]), text
    assert details["unreported_loss"] == 0, text
    assert details["node_values_received_twice_with_new_seq"] == 0, text
    assert result.lost == 0, text
    assert details["seq_conflicts"] == 0, text
    assert details["integrity_check"] == "ok", text
    assert result.crashes == 0, text
