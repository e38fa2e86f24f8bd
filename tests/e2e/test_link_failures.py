"""The link failing at the worst moment: a message that kills the handler, an answer in flight.

- A downlink message whose handling kills the process is delivered again after every restart
  (it is acknowledged only once handled). After two such deaths the third delivery is
  acknowledged and dropped, and the centre gets `downlink_rejected` with reason `poison`
  (docs/protocol.md §7). The handler is made to die by tests/support/crashing_gateway.py.
- A command's response published on a link that dies before the broker acknowledged it goes
  out again on the next connection (docs/protocol.md §8): the command itself is not answered
  twice, so without this the centre would never hear the answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from harness.link_proxy import LinkProxy
from harness.station import StationProcess, wait_until
from tests.e2e.conftest import CMD_TOPIC, TOWN_TOPIC, Rig, running_station
from tests.support.crashing_gateway import CRASH_ENV, CRASH_EXIT_CODE


def test_a_message_that_kills_the_handler_twice_is_dropped_as_poison(tmp_path: Path) -> None:
    with running_station(tmp_path) as rig:
        poison = rig.centre.seal_alert(rig.alert())
        digest = hashlib.sha256(poison).hexdigest()
        rig.barrier()
        assert rig.station.terminate() == 0
        rig.station = StationProcess(
            rig.config,
            env={**rig.capture.env(), CRASH_ENV: digest},
            module="tests.support.crashing_gateway",
        )
        rig.start()
        mark = rig.mark()
        rig.publish(TOWN_TOPIC, poison)
        for life in (1, 2):  # the first delivery, then the redelivery after the restart
            code = wait_until(
                lambda: rig.station.proc is not None and rig.station.proc.poll() is not None,
                20,
                f"life {life} to die handling the message",
            )
            assert code and rig.station.proc is not None
            assert rig.station.proc.returncode == CRASH_EXIT_CODE, rig.station.log()[-2000:]
            rig.station.start()
        # The third delivery: acknowledged and dropped, reported, and the station lives on.
        event = wait_until(
            lambda: next(iter(rig.events("downlink_rejected", mark)), None),
            20,
            "the poison event at the centre",
        )
        assert event["reason"] == "poison", event
        assert event["payload_sha256"] == digest, event
        assert rig.command("status", timeout=10)["ok"]
        alert = rig.alert()
        rig.send(alert)
        rig.wait_status(alert.id, "played", timeout=20)
        assert rig.station.running()
        # Acknowledged: a fourth life does not see it again.
        assert rig.station.terminate() == 0
        rig.start()
        rig.barrier()
        assert len(rig.events("downlink_rejected", mark)) == 1
        assert "the poison message" in rig.station.log()


def _signature(raw: bytes) -> bytes:
    return str(json.loads(raw)["sig"]).encode()


def _use_port(rig: Rig, port: int) -> None:
    text = rig.config.read_text(encoding="utf-8")
    rig.config.write_text(re.sub(r"(?m)^port = \d+$", f"port = {port}", text), encoding="utf-8")


def test_a_response_published_on_a_link_that_dies_is_sent_again(tmp_path: Path) -> None:
    with running_station(tmp_path) as rig, LinkProxy(rig.broker.port) as proxy:
        assert rig.station.terminate() == 0
        _use_port(rig, proxy.port)
        rig.start()
        raw = rig.centre.seal_command("status")
        command_id = json.loads(base64.b64decode(json.loads(raw)["payload"]))["id"]
        proxy.blackhole_after(_signature(raw))
        rig.publish(CMD_TOPIC, raw)
        wait_until(proxy.blackholed.is_set, 10, "the command to reach the station")
        # The station answers into the blackhole; then the link dies.
        wait_until(lambda: proxy.dropped_bytes > 0, 10, "the station to answer")
        assert not rig.responses(command_id)
        proxy.cut()
        response = wait_until(
            lambda: next(iter(rig.responses(command_id)), None),
            20,
            "the response after the reconnect",
        )
        assert response["ok"], response
        assert "lost the broker" in rig.station.log()


def test_an_alert_sent_while_the_station_was_off_survives_a_broker_restart(
    tmp_path: Path,
) -> None:
    """MQTT 5 sessions end when the connection does unless an expiry is asked for (§2)."""
    with running_station(tmp_path) as rig:
        rig.barrier()
        assert rig.station.terminate() == 0
        alert = rig.alert()
        rig.send(alert)  # queued by the broker in the station's session
        rig.broker.restart()
        wait_until(rig.sub.client.is_connected, 20, "the centre to reconnect")
        rig.start()
        rig.wait_status(alert.id, "played", timeout=20)
        assert "(session resumed;" in rig.station.log()
