"""What a restart finds in the alert log: only broadcasts are resumed, never a command."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.config.loader import load_config
from gateway.store.alert_records import AlertRecord
from gateway.store.outbox import open_store
from harness.mosquitto import Mosquitto, Subscriber
from harness.station import (
    Centre,
    StationProcess,
    station_topic,
    wait_until,
    write_config,
)


def test_a_command_logged_before_a_crash_is_not_replayed_as_an_alert(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        centre = Centre()
        config_path = write_config(tmp_path, broker.port, centre)
        config = load_config(config_path)
        store = open_store(config)
        # As the intake leaves it when killed between logging a command and answering it.
        assert store.alerts.remember("cmd:c-1", AlertRecord(kind="command"))
        store.close()
        sub = Subscriber(broker.port, [station_topic("#")])
        station = StationProcess(config_path).start()
        try:
            station.wait_log("Received SUBACK", 15)
            # A status command round trip: by its answer, resume() has long run.
            sub.client.publish(station_topic("cmd"), centre.seal_command("status"), qos=1)
            wait_until(lambda: sub.on(station_topic("cmd/res")), 15, "the status answer")
            receipts = [json.loads(m.payload) for m in sub.on(station_topic("receipt"))]
            assert [r for r in receipts if r["alert"] == "cmd:c-1"] == []
            assert station.terminate() == 0
        finally:
            station.close()
            sub.close()
        store = open_store(config)
        entry = store.alerts.entry("cmd:c-1")
        store.close()
        assert entry is not None and entry.state == "done"
