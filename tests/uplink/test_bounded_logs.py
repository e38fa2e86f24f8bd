"""The station's own tables and log lines stay bounded under replays (issue 12).

Unit level, on a real SQLite file: the answered-once table keeps what docs/protocol.md §6 asks
(at least 10,000 answers and those of the last 24 h) and no more, across a reopen; a finished
alert keeps a compact record and ancient ones leave the log; folded log lines.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from drivers.base import now_ms
from gateway.downlink.answered import AnsweredLog
from gateway.log_folding import LogFolder
from gateway.store import alert_log
from gateway.store.alert_records import AlertRecord
from gateway.store.outbox import Store


def open_store(path: Path) -> Store:
    return Store(path, station_id="t-1", max_mb=64, max_age_days=30, commit_interval_s=30)


def digest(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


def test_answers_survive_a_reopen_and_the_table_stays_bounded(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    with open_store(db) as store:
        answered = AnsweredLog(store, keep=200, keep_ms=0)
        for n in range(1200):
            answered.add("centre", digest(n), f"a-{n}")
            if n % 100 == 99:
                answered.flush()
        assert answered.answered("centre", digest(1199)) == "a-1199"
        assert answered.answered("other-key", digest(1199)) is None
    with open_store(db) as store:
        answered = AnsweredLog(store, keep=200, keep_ms=0)
        assert answered.answered("centre", digest(1199)) == "a-1199"  # a restart remembers
        rows = store.run_write(lambda c: c.execute("SELECT count(*) FROM answered").fetchone())
        assert 200 <= rows[0] <= 200 + 500  # trimmed every 500 answers


def test_answers_of_the_last_24_h_are_kept_beyond_the_count(tmp_path: Path) -> None:
    with open_store(tmp_path / "g.db") as store:
        answered = AnsweredLog(store, keep=100)  # the real 24 h
        for n in range(600):
            answered.add("centre", digest(n), f"a-{n}")
        answered.flush()
        assert answered.answered("centre", digest(0)) == "a-0"


def test_a_finished_alert_keeps_a_compact_record_and_ancient_ones_go(tmp_path: Path) -> None:
    payload = json.dumps({"id": "a-1", "audio": {"data": "A" * 200_000}}).encode()
    record = AlertRecord(
        kind="central",
        format="alert",
        key="centre",
        level="red",
        expires_ms=1,
        payload=payload,
        alert={"id": "a-1", "event": "flood", "status": "actual", "text": "x" * 5000},
    )
    with open_store(tmp_path / "g.db") as store:
        assert store.alerts.remember("centre/a-1", record)
        assert store.alerts.remember("local:r:7", AlertRecord(kind="local", level="red"))
        entry = store.alerts.entry("centre/a-1")
        assert entry is not None and len(entry.record.to_json()) > 200_000
        store.alerts.set_state("centre/a-1", "played")
        store.alerts.set_state("local:r:7", "played")
        compact = store.alerts.entry("centre/a-1")
        assert compact is not None
        assert len(compact.record.to_json()) < 1000
        assert compact.record.payload_sha256 == hashlib.sha256(payload).hexdigest()
        assert compact.record.alert == {"id": "a-1", "event": "flood", "status": "actual"}
        # A week and a day later both could only be expired: the log forgets the central
        # one, and keeps the newest local one (its number must not come back).
        later = now_ms() + 8 * 86_400_000
        week = 7 * 86_400
        assert store.run_write(lambda c: alert_log.prune(c, now_ms(), week)) == 0
        assert store.run_write(lambda c: alert_log.prune(c, later, week)) == 1
        assert store.alerts.entry("centre/a-1") is None
        assert store.run_write(alert_log.highest_local_number) == 7


def test_folded_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.folding")
    folder = LogFolder(logger)
    with caplog.at_level(logging.INFO, logger="test.folding"):
        for n in range(300):
            folder.log("replays", 1000 + n, logging.WARNING, "replay %d", n)
        assert [r.getMessage() for r in caplog.records] == ["replay 0"]
        folder.tick(1000 + 59_999)
        assert len(caplog.records) == 1
        folder.tick(1000 + 60_000)
        assert caplog.records[-1].getMessage() == (
            "299 more replays in the last minute; the last: replay 299"
        )
        assert caplog.records[-1].levelno == logging.WARNING
        folder.log("replays", 200_000, logging.WARNING, "replay %d", 300)
        assert caplog.records[-1].getMessage() == "replay 300"
