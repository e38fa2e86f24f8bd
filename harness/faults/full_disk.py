"""Scenario 4: the database's disk fills up; the service rides it out and reports what it dropped.

Why this module exists: one scenario, one module, called small by tests/faults/ and at full
size by benchmarks/chaos.py. See harness/faults/__init__.py for what the scenarios count and
docs/faults.md for what they found.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from harness import station_db
from harness.faults.common import (
    TOWN_TOPIC,
    ScenarioResult,
    inline_alert,
    wait_for,
)
from harness.faults.station import FaultStation, edit_config
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.serial_noise import CountingNode
from harness.serial_ports import PtyPort
from harness.sounds import contains
from harness.station import Centre, write_config
from harness.tmpfs import SmallDisk


def full_disk(
    folder: Path,
    *,
    full_s: float,
    disk_kib: int = 4096,
    node_rate: float = 1000.0,
    buffered_readings: int | None = 3000,
) -> ScenarioResult:
    """The database on a small tmpfs that fills up, with the broker gone meanwhile; then space returns.

    A counting JSON-lines node writes `node_rate` readings/s all along. The disk is filled to
    ENOSPC while the broker is up (an alert sent now must still play), then the broker goes
    away for `full_s` seconds: the readings pile up in memory, and beyond the memory bound
    (``gateway.store.writer.MAX_BUFFERED_READINGS``, lowered to `buffered_readings` so a test sees it
    within seconds; None keeps the real 100,000) they are dropped and must be reported as
    ``data_dropped``. Then the ballast goes, the broker returns, and the centre must get every
    committed record plus ``data_dropped`` events whose counts match exactly the values that
    never arrived.
    """
    result = ScenarioResult(f"4 full disk ({disk_kib} KiB tmpfs, {full_s:g} s full)")
    reason = SmallDisk.available(folder)
    if reason is not None:
        result.skipped = reason
        return result
    folder.mkdir(parents=True, exist_ok=True)
    tune = (
        {}
        if buffered_readings is None
        else {"gateway.store.writer.MAX_BUFFERED_READINGS": buffered_readings}
    )
    with SmallDisk(folder / "disk", disk_kib) as disk, Mosquitto() as broker:
        port = PtyPort(folder / "ttyNODE")
        node = CountingNode(port.master, node_rate)
        centre = Centre()
        sensor = f"""
[[sensors]]
name = "node"
type = "jsonl"
port = "{port.path}"
timeout_s = 5
"""
        config = write_config(folder, broker.port, centre, body=sensor)
        edit_config(config, {'path = "station.db"': 'path = "disk/station.db"'})
        ledger = Ledger(port=broker.port)
        station = FaultStation(config, tune=tune)
        try:
            result.details = _full_disk_phases(disk, broker, ledger, centre, station, node, full_s)
        finally:
            node.stop()
            station.close()
            ledger.close()
            port.close()
        result.crashes = int(result.details.pop("crashes"))
        result.lost = int(result.details["committed_records_missing"])
        result.duplicates = ledger.duplicates()
    return result


def _full_disk_phases(
    disk: SmallDisk,
    broker: Mosquitto,
    ledger: Ledger,
    centre: Centre,
    station: FaultStation,
    node: CountingNode,
    full_s: float,
) -> dict[str, Any]:
    details: dict[str, Any] = {}
    db = disk.mountpoint / "station.db"
    station.start()
    station.wait_ready()
    node.start()
    ledger.wait(lambda: len(ledger.readings_of("node")) > 100, 20, "the node's readings")
    # The disk fills up while the broker is there.
    details["ballast_kib"] = disk.fill() // 1024
    station.wait_log("cannot write", 20)
    alert_id, pcm, raw = inline_alert(centre, 440, 0.3, level="yellow")
    ledger.publish(TOWN_TOPIC, raw)
    heard = wait_for(lambda: contains(station.capture.raw(), pcm), 20)
    details["alert_on_full_disk_heard"] = heard
    # The broker goes away; readings pile up in memory and overflow.
    broker.stop()
    time.sleep(full_s)
    details["running_while_full"] = station.running()
    details["free_kib_while_full"] = disk.free_kib()
    # Space returns, then the broker.
    disk.empty()
    station.wait_log("writing works again", 20)
    broker.start()
    time.sleep(1.0)
    node.stop()
    written = node.written
    ledger.wait(lambda: ledger.events_of("data_dropped"), 30, "a data_dropped event")
    committed = station_db.settled_committed_seq(db)
    with contextlib.suppress(AssertionError):
        ledger.wait_complete(committed, 60)
    dropped = [e for e in ledger.events_of("data_dropped")]
    values = [int(r["v"]) for r in ledger.readings_of("node")]
    details["node_values_written"] = written
    details["node_values_at_centre"] = len(set(values))
    details["node_values_received_twice_with_new_seq"] = len(values) - len(set(values))
    details["data_dropped_events"] = [
        {k: e.get(k) for k in ("count", "from_seq", "to_seq", "reason")} for e in dropped
    ]
    reported = sum(int(e["count"]) for e in dropped)
    details["dropped_reported"] = reported
    details["unreported_loss"] = written - len(set(values)) - reported
    details["committed_seqs"] = committed
    details["committed_records_missing"] = len(ledger.missing(committed))
    details["seq_conflicts"] = len(ledger.conflicts)
    details["alert_receipts"] = ledger.statuses(alert_id)
    exit_code = station.terminate(timeout=10) if station.running() else -1
    details["station_exit_code"] = exit_code
    details["integrity_check"] = station_db.integrity(db)
    details["crashes"] = (exit_code != 0) + (not details["running_while_full"])
    return details
