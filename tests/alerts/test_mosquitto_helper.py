"""The shared test broker (harness/mosquitto.py) does what other tests rely on."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from harness.mosquitto import Mosquitto, Subscriber


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


def make_certs(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            f"{name}.crt",
        )
    return {
        n: folder / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")
    }


def test_tls_broker_with_client_certificates(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    with Mosquitto(
        cafile=certs["ca.crt"],
        certfile=certs["server.crt"],
        keyfile=certs["server.key"],
        require_certificate=True,
    ) as broker:
        sub = Subscriber(
            broker.port,
            ["secure/#"],
            cafile=certs["ca.crt"],
            certfile=certs["client.crt"],
            keyfile=certs["client.key"],
        )
        try:
            sub.client.publish("secure/1", b"over tls", qos=1)
            assert sub.wait_for(lambda m: m.topic == "secure/1").payload == b"over tls"
        finally:
            sub.close()
        with pytest.raises((TimeoutError, OSError)):
            Subscriber(broker.port, ["x"], timeout=1).close()  # plain MQTT on a TLS port
