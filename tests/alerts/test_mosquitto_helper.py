"""The shared test broker (tests/support/mosquitto.py) does what other tests rely on."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.mosquitto import Mosquitto, Subscriber


def persistent_client(port: int, received: list[bytes], ready: threading.Event) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="cx-helper-test", clean_session=False
    )

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        c.subscribe("t/queued", qos=1)

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = lambda _c, _u, msg: received.append(bytes(msg.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(5)
    return client


def test_queued_qos1_message_survives_a_broker_restart() -> None:
    with Mosquitto() as broker:
        received: list[bytes] = []
        ready = threading.Event()
        client = persistent_client(broker.port, received, ready)
        client.disconnect()
        client.loop_stop()
        publisher = Subscriber(broker.port, ["unused"])
        publisher.client.publish("t/queued", b"while offline", qos=1).wait_for_publish(5)
        publisher.close()
        port = broker.port
        broker.restart()
        assert broker.port == port and broker.running
        ready.clear()
        client = persistent_client(broker.port, received, ready)
        try:
            for _ in range(100):
                if received:
                    break
                threading.Event().wait(0.05)
        finally:
            client.disconnect()
            client.loop_stop()
        assert received == [b"while offline"]


def test_kill_stops_the_broker_and_start_brings_it_back() -> None:
    with Mosquitto() as broker:
        broker.kill()
        assert not broker.running
        with pytest.raises((ConnectionRefusedError, TimeoutError)):
            Subscriber(broker.port, ["x"]).close()
        broker.start()
        sub = Subscriber(broker.port, ["x/#"])
        sub.client.publish("x/1", b"one", qos=1)
        assert sub.wait_for(lambda m: m.topic == "x/1").payload == b"one"
        sub.close()
