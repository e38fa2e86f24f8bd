"""TLS with client certificates, and a broker that refuses the station's certificate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.mosquitto import Mosquitto
from harness.tls import Pki, make_cert, make_pki
from tests.uplink.conftest import Centre, add_readings, contiguous, make_config, running


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tls_broker(pki: Pki) -> Iterator[Mosquitto]:
    with Mosquitto(
        cafile=pki.ca.cert,
        certfile=pki.server.cert,
        keyfile=pki.server.key,
        require_certificate=True,
    ) as broker:
        yield broker


def tls_config(tmp_path: Path, port: int, ca: Path, cert: Path, key: Path) -> dict[str, object]:
    return {
        "host": "localhost",
        "port": port,
        "tls": True,
        "ca_file": str(ca),
        "cert_file": str(cert),
        "key_file": str(key),
    }


def test_records_flow_over_tls_with_a_client_certificate(
    tmp_path: Path, pki: Pki, tls_broker: Mosquitto
) -> None:
    centre_cert = make_cert(tmp_path / "pki", "centre", pki.ca, server=False)
    centre = Centre(tls_broker.port, ca=pki.ca.cert, cert=centre_cert)
    mqtt = tls_config(tmp_path, tls_broker.port, pki.ca.cert, pki.client.cert, pki.client.key)
    config = make_config(tmp_path, tls_broker.port, mqtt=mqtt)

    async def scenario() -> None:
        async with running(config) as station:
            add_readings(station.store, 2_000)
            station.store.add_receipt("a-1", "received", {})
            await centre.until(lambda c: len(c.seqs()) == 2_001, 15, "2,001 records")

    try:
        asyncio.run(scenario())
        assert contiguous(centre.seqs())
        assert centre.states and centre.states[0][0]["online"] is True
    finally:
        centre.close()


def test_a_refused_client_certificate_is_logged_and_records_keep_buffering(
    tmp_path: Path, pki: Pki, tls_broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    rogue = make_pki(tmp_path / "rogue", client_name="rogue-station").client
    mqtt = tls_config(tmp_path, tls_broker.port, pki.ca.cert, rogue.cert, rogue.key)
    config = make_config(tmp_path, tls_broker.port, mqtt=mqtt)
    caplog.set_level(logging.WARNING, logger="gateway.uplink")

    async def scenario() -> None:
        async with running(config, connack_timeout_s=1.0) as station:
            add_readings(station.store, 1_000)
            station.store.add_event("sensor_ok", {"sensor": "river"})
            await asyncio.sleep(2.5)
            assert not station.uplink.connected
            station.store.flush()
            assert station.store.backlog()[0] == 1_001

    asyncio.run(scenario())
    print(caplog.text)
    assert "client certificate" in caplog.text


def test_username_and_password_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import subprocess

    passwords = tmp_path / "mosquitto.passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), "station-01", "s3cret-pass"], check=True
    )
    passwords.chmod(0o600)
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret-pass\n")
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    extra = ["allow_anonymous false", f"password_file {passwords}"]
    caplog.set_level(logging.DEBUG, logger="gateway.uplink")

    async def scenario(password_file: Path) -> bool:
        mqtt = {"username": "station-01", "password_file": str(password_file)}
        async with running(make_config(tmp_path, broker.port, mqtt=mqtt)) as station:
            add_readings(station.store, 100)
            station.store.flush()
            try:
                await station.until(lambda: station.store.backlog()[0] == 0, 2, "the drain")
            except AssertionError:
                return False
            return True

    with Mosquitto(extra_config=extra) as broker:
        assert asyncio.run(scenario(secret)), "the right password connects and drains"
        assert not asyncio.run(scenario(wrong)), "a wrong password must not"
    assert "refused the connection" in caplog.text and "mqtt.password_file" in caplog.text
    assert "s3cret-pass" not in caplog.text and "not-the-password" not in caplog.text
