"""Scenario 3: the broker behind a veth pair in its own namespace; the link cut, then lossy.

Why this module exists: one scenario, one module, called small by tests/faults/ and at full
size by benchmarks/chaos.py. See harness/faults/__init__.py for what the scenarios count and
docs/faults.md for what they found.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness import station_db
from harness.faults.common import TOWN_TOPIC, ScenarioResult, inline_alert, simulated_sensors
from harness.faults.station import FaultStation, edit_config
from harness.ledger import Ledger
from harness.netns import NamespacedMosquitto, NetnsLink
from harness.sounds import contains
from harness.station import Centre, write_config


def network_cut(
    folder: Path,
    *,
    cut_s: float,
    loss_s: float,
    loss_percent: int = 30,
    sensors: int = 5,
    sensor_interval_s: float = 0.05,
) -> ScenarioResult:
    """The broker behind a veth pair: the link cut for `cut_s`, then `loss_percent` % loss for `loss_s`.

    An alert is published while the link is down (it waits in the broker for the station's
    persistent session) and one during the loss; both must play. Afterwards every committed
    record must be at the centre. Skipped, with the reason, where namespaces cannot be made.
    """
    result = ScenarioResult(f"3 network cut {cut_s:g} s, then {loss_percent} % loss {loss_s:g} s")
    reason = NetnsLink.available()
    if reason is not None:
        result.skipped = reason
        return result
    folder.mkdir(parents=True, exist_ok=True)
    with NetnsLink() as link:
        broker = NamespacedMosquitto(link)
        broker.start()
        ledger: Ledger | None = None
        station: FaultStation | None = None
        try:
            centre = Centre()
            config = write_config(
                folder, broker.port, centre, body=simulated_sensors(sensors, sensor_interval_s)
            )
            edit_config(config, {'host = "127.0.0.1"': f'host = "{link.broker_addr}"'})
            ledger = Ledger(unix_path=broker.unix_path)
            station = FaultStation(config, netns=link.station_ns)
            result.details = _network_phases(
                link, ledger, centre, station, folder / "station.db", cut_s, loss_s, loss_percent
            )
            result.crashes = int(result.details.pop("crashes"))
        finally:
            if station is not None:
                station.close()
            if ledger is not None:
                ledger.close()
            broker.close()
        committed = int(result.details["committed_seqs"])
        result.lost = len(ledger.missing(committed))
        result.duplicates = ledger.duplicates()
        result.details["seq_conflicts"] = len(ledger.conflicts)
    return result


def _network_phases(
    link: NetnsLink,
    ledger: Ledger,
    centre: Centre,
    station: FaultStation,
    db: Path,
    cut_s: float,
    loss_s: float,
    loss_percent: int,
) -> dict[str, Any]:
    station.start()
    station.wait_ready()
    ledger.wait(lambda: ledger.readings, 20, "readings over the veth")
    time.sleep(1.0)
    details: dict[str, Any] = {
        "station_address": link.station_addr,
        "broker_address": link.broker_addr,
    }
    # The cut.
    link.cut()
    cut_alert, cut_pcm, raw = inline_alert(centre, 523, 0.3, level="yellow")
    ledger.publish(TOWN_TOPIC, raw)
    time.sleep(cut_s)
    seen_before = ledger.max_reading_seq()
    link.restore()
    restored_at = time.monotonic()
    ledger.wait(
        lambda: ledger.max_reading_seq() > seen_before, 60, "readings after the link came back"
    )
    details["link_back_to_flowing_s"] = round(time.monotonic() - restored_at, 2)
    ledger.wait(
        lambda: "played" in ledger.statuses(cut_alert), 60, "the alert sent during the cut played"
    )
    details["alert_sent_during_cut_played_receipt_s_after_restore"] = round(
        time.monotonic() - restored_at, 2
    )
    # Packet loss.
    before_loss = len(ledger.readings)
    link.lossy(loss_percent)
    loss_at = time.monotonic()
    loss_alert, loss_pcm, raw = inline_alert(centre, 659, 0.3, level="yellow")
    ledger.publish(TOWN_TOPIC, raw)
    played_at = None
    while time.monotonic() - loss_at < loss_s:
        if played_at is None and "played" in ledger.statuses(loss_alert):
            played_at = time.monotonic()
        time.sleep(0.05)
    details["readings_delivered_during_loss"] = len(ledger.readings) - before_loss
    details["packets_dropped_by_loss_rules"] = link.dropped()
    link.clear_loss()
    if played_at is None:
        ledger.wait(
            lambda: "played" in ledger.statuses(loss_alert), 60, "the alert sent during loss"
        )
        played_at = time.monotonic()
    details["alert_sent_during_loss_played_receipt_after_s"] = round(played_at - loss_at, 2)
    details["alert_sent_during_loss_receipt_before_loss_ended"] = played_at - loss_at < loss_s
    # Everything committed must arrive once the link is clean again.
    crashes = int(station.exited_by_itself() is not None)
    committed = station_db.committed_seq(db)
    ledger.wait_complete(committed, 120)
    details["committed_seqs"] = committed
    exit_code = station.terminate(timeout=10) if station.running() else -1
    # The capture's tail is written when the stream closes: look at it after the exit.
    details["heard_in_full"] = sum(
        any(contains(c.raw(), pcm) for c in station.captures) for pcm in (cut_pcm, loss_pcm)
    )
    details["crashes"] = crashes + (exit_code != 0)
    details["station_exit_code"] = exit_code
    details["station_reconnects"] = station.log().count("connected to the broker at")
    return details
