"""Scenario 2: the broker stopped and started again five times while the station drains.

SIGTERM: Mosquitto saves what it holds, so the centre must get every committed record without
any help. SIGKILL: Mosquitto forgets messages it had already acknowledged to the station (the
station then rightly treats them as delivered), so the centre finds gaps; it asks for them with
the `resend` command (docs/protocol.md §8) and afterwards nothing may be missing. The two are
counted separately: the losses SIGKILL causes are the broker's, not the station's.
"""

from __future__ import annotations

from pathlib import Path

from harness.faults import broker_restarts
from tests.faults.conftest import report

RECORDS = 50_000
RESTARTS = 5


def test_broker_sigterm_restarts_during_a_drain_lose_nothing(tmp_path: Path, seed: int) -> None:
    result = broker_restarts(tmp_path, records=RECORDS, restarts=RESTARTS, seed=seed, hard=False)
    text = report(result)
    assert result.details["backlog_reported_empty"], text
    assert result.details["lost_before_resend"] == 0, text
    assert result.lost == 0, text
    assert result.details["seq_conflicts"] == 0, text
    assert result.crashes == 0, text
    # The restarts really fell inside the drain.
    progress = result.details["centre_max_seq_at_each_restart"]
    assert len(progress) == RESTARTS and progress[-1] < RECORDS, text


def test_broker_sigkill_restarts_leave_gaps_that_resend_repairs(tmp_path: Path, seed: int) -> None:
    result = broker_restarts(tmp_path, records=RECORDS, restarts=RESTARTS, seed=seed, hard=True)
    text = report(result)
    assert result.details["backlog_reported_empty"], text
    assert result.details["repaired_by_resend"] == result.details["lost_before_resend"], text
    assert result.lost == 0, text
    assert result.details["seq_conflicts"] == 0, text
    assert result.crashes == 0, text
