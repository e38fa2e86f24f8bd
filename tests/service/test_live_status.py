"""`cunxiang status` while `cunxiang run` runs, right after it starts, and after it stopped or died.

The real service runs in a subprocess against a private Mosquitto; the centre subscribes to the
station's topics. What the technician sees is the command's output (run in-process through
click, as the command line would run it): live from the service's status socket while it
answers, the database's view — saying so — when it does not. The socket must not let any
client hold up the service: readings keep reaching the centre while a client says nothing or
sends 10 MB.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli.status import CLEAR, status
from gateway.status.server import ask_service, socket_path
from harness.mosquitto import Mosquitto, Subscriber
from harness.station import ROOT, StationProcess, station_topic, wait_until, write_config

SENSOR = """
[[sensors]]
name = "river"
type = "simulated"
quantity = "water_level_m"
pattern = "sine"
low = 0.5
high = 1.5
period_s = 7
interval_s = 0.1
"""
STATE = station_topic("state")
TELEMETRY = station_topic("telemetry")


def status_of(config: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(status, ["-c", str(config), *args], env=env)
    return result.exit_code, result.output


def status_doc(config: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    code, output = status_of(config, "--json", env=env)
    assert code == 0, output
    doc: dict[str, Any] = json.loads(output)
    return doc


def readings_at_centre(sub: Subscriber) -> list[dict[str, Any]]:
    return [r for m in sub.on(TELEMETRY) for r in json.loads(m.payload)["readings"]]


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as server:
        yield server


@pytest.fixture
def centre(broker: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(broker.port, [station_topic("#")])
    yield sub
    sub.close()


def start_station(
    folder: Path, broker: Mosquitto, env: dict[str, str] | None = None
) -> StationProcess:
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, broker.port, body=SENSOR)
    return StationProcess(config, env={**os.environ, **(env or {})}).start()


def wait_online(centre: Subscriber, station: StationProcess, after: int = 0) -> float:
    """Wait for an online state (after the first `after` messages); the time.time() it came."""
    try:
        centre.wait_for(
            lambda m: (
                m.topic == STATE
                and json.loads(m.payload)["online"] is True
                and centre.messages.index(m) >= after
            ),
            timeout=20,
        )
    except TimeoutError:
        raise AssertionError(f"the station never came online:\n{station.log()[-3000:]}") from None
    return time.time()


def test_live_status_within_a_second_of_coming_online_then_the_database_when_stopped(
    tmp_path: Path, broker: Mosquitto, centre: Subscriber
) -> None:
    station = start_station(tmp_path / "station", broker)
    try:
        online_at = wait_online(centre, station)
        doc = status_doc(station.config)
        assert doc["ts"] - online_at * 1000 <= 1000, "the answer came more than 1 s later"
        assert doc["online"] is True and doc["broker_connected"] is True, doc
        assert doc["source"] == "service" and doc["service_running"] is True
        assert doc["sensors"] == {"river": "ok"}
        (reading,) = doc["last_readings"]
        assert reading["sensor"] == "river" and reading["q"] == "water_level_m"
        # The value shown is one the centre receives.
        wait_until(
            lambda: any(
                (r["ts"], r["v"]) == (reading["ts"], reading["v"])
                for r in readings_at_centre(centre)
            ),
            10,
            f"the reading {reading} at the centre",
        )
        code, text = status_of(station.config)
        assert code == 0 and "live answer from the service" in text
        assert "Broker:    connected" in text and "river" in text
        assert station.terminate() == 0
    finally:
        station.close()

    assert not socket_path(station.config.parent / "station.db").exists()
    doc = status_doc(station.config)
    assert doc["source"] == "database" and doc["service_running"] is False
    assert doc["online"] is False and "not running" in doc["note"]
    # The last value recorded: the centre's last one, or one taken after it (still unsent).
    # Not necessarily newer than the one the live answer showed: on a fast machine the service
    # can stop before the sensor's next reading.
    (recorded,) = doc["last_readings"]
    last = readings_at_centre(centre)[-1]
    assert recorded["ts"] >= reading["ts"] and recorded["ts"] >= last["ts"]
    assert doc["backlog"] > 0 if recorded["ts"] > last["ts"] else recorded["v"] == last["v"]
    code, text = status_of(station.config)
    assert code == 0 and "NOT RUNNING" in text and "showing the database's view" in text


def test_a_dead_or_stuck_service_falls_back_to_the_database_in_bounded_time(
    tmp_path: Path, broker: Mosquitto, centre: Subscriber
) -> None:
    station = start_station(tmp_path / "station", broker)
    sock = socket_path(station.config.parent / "station.db")
    try:
        wait_online(centre, station)
        station.kill()  # SIGKILL: the socket file stays behind
        assert sock.exists()
        started = time.monotonic()
        doc = status_doc(station.config)
        assert time.monotonic() - started < 2.0
        assert doc["source"] == "database" and doc["service_running"] is False
        assert "nobody listens" in doc["note"]

        mark = len(centre.messages)
        station.start()  # on the same database: it replaces the stale socket
        wait_online(centre, station, after=mark)
        assert status_doc(station.config)["source"] == "service"
        os.kill(station.pid, signal.SIGSTOP)  # alive, holding its lock, answering nothing
        try:
            started = time.monotonic()
            code, text = status_of(station.config)
            assert time.monotonic() - started < 5.0
            assert code == 0 and "NOT ANSWERING" in text and "database's view" in text
        finally:
            os.kill(station.pid, signal.SIGCONT)
        assert status_doc(station.config)["source"] == "service"
    finally:
        station.close()


def _flood(path: Path, result: dict[str, Any]) -> None:
    """Send 10 MB without a newline, then read whatever the service answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(path))
        try:
            client.sendall(b"x" * 10_000_000)
            result["sent_all"] = True
        except OSError as exc:
            result["send_error"] = exc
        try:
            result["reply"] = client.recv(65536)
        except OSError as exc:
            result["recv_error"] = exc


def test_silent_and_flooding_clients_do_not_hold_up_the_service(
    tmp_path: Path, broker: Mosquitto, centre: Subscriber
) -> None:
    station = start_station(tmp_path / "station", broker)
    database = station.config.parent / "station.db"
    path = socket_path(database)
    try:
        wait_online(centre, station)
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(str(path))
        flood: dict[str, Any] = {}
        flooder = threading.Thread(target=_flood, args=(path, flood))
        flooder.start()
        try:
            before = len(readings_at_centre(centre))
            started = time.monotonic()
            reply = ask_service([path], database, timeout_s=5.0)
            asked_s = time.monotonic() - started
            assert reply["status"]["online"] is True and asked_s < 1.0, asked_s
            wait_until(lambda: len(readings_at_centre(centre)) >= before + 5, 3, "readings flowing")
        finally:
            flooder.join(15)
        # Each got its answer: an error, and the connection closed.
        assert b"request longer than 4096 bytes" in flood.get("reply", b""), flood
        silent.settimeout(5)
        assert b"no request within" in silent.recv(65536)
        silent.close()
        assert ask_service([path], database)["ok"] is True
    finally:
        station.close()


def test_under_systemd_the_socket_is_in_the_runtime_directory_for_owner_and_group(
    tmp_path: Path, broker: Mosquitto, centre: Subscriber
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = {"RUNTIME_DIRECTORY": str(runtime)}
    station = start_station(tmp_path / "station", broker, env)
    try:
        wait_online(centre, station)
        sock = runtime / "status.sock"
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        assert not socket_path(station.config.parent / "station.db", {}).exists()
        assert status_doc(station.config, env=env)["source"] == "service"
        assert station.terminate() == 0
        assert not sock.exists()
    finally:
        station.close()


def _watch(config: Path, *args: str, tty: bool, marker: bytes) -> bytes:
    """`cunxiang status --watch` on a pipe or a pseudo-terminal until `marker` came three
    times, then Ctrl-C (SIGINT); its whole output.

    The output is read in this thread, also while waiting for the exit: a reader thread of its
    own could starve for the GIL in a long test session, and a child whose terminal nobody
    reads blocks in its last write and cannot exit."""
    command = [sys.executable, "-m", "gateway", "status", "-c", str(config), "--watch", *args]
    if tty:
        reader, writer = pty.openpty()
    else:
        reader, writer = os.pipe()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=writer, stderr=subprocess.DEVNULL)
    os.close(writer)
    out = bytearray()

    def drain(until: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([reader], [], [], min(left, 0.1))
            if ready:
                try:
                    chunk = os.read(reader, 65536)
                except OSError:  # a pty's master reads EIO once the child is gone
                    chunk = b""
                if not chunk:  # the child closed its end: it is exiting
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(max(0.001, deadline - time.monotonic()))
                    return until()
                out.extend(chunk)
        return True

    try:
        reported = drain(lambda: out.count(marker) >= 3, 30)
    finally:
        proc.send_signal(signal.SIGINT)
        exited = drain(lambda: proc.poll() is not None, 10)
        if not exited:
            proc.kill()
        os.close(reader)
    assert reported, f"no three reports from {command}: {bytes(out[-500:])!r}"
    assert exited, f"still running 10 s after Ctrl-C: {command}"
    assert proc.wait(5) == 0
    return bytes(out)


def test_watch_refreshes_in_place_on_a_terminal_and_repeats_on_a_pipe(
    tmp_path: Path, broker: Mosquitto, centre: Subscriber
) -> None:
    station = start_station(tmp_path / "station", broker)
    try:
        wait_online(centre, station)
        live = b"live answer from the service"
        on_terminal = _watch(station.config, "--interval", "0.3", tty=True, marker=live)
        assert on_terminal.count(CLEAR.encode()) >= 3
        on_pipe = _watch(station.config, "--interval", "0.3", tty=False, marker=live)
        assert CLEAR.encode() not in on_pipe
        as_json = _watch(station.config, "--json", "--interval", "0.3", tty=False, marker=b"\n")
        lines = as_json.split(b"\n")[:-1]  # whole lines (Ctrl-C may cut into the last)
        assert len(lines) >= 3 and all(json.loads(line)["source"] == "service" for line in lines)
    finally:
        station.close()
