"""A station that cannot be built stops at once, says why, and leaves nothing open.

A Modbus level transmitter whose decimals register is its value register passes the config's
schema (`cunxiang check-config` says OK); only its driver refuses it, and the driver is the
last part the service builds — after the store, the audio, the intake and the uplink exist
(gateway/parts.py). What a technician observes: `cunxiang run` names the sensor and what is
wrong, without a traceback, and exits 78 (EX_CONFIG: systemd does not restart it, a restart
cannot fix the file); the database is not locked and no status socket is left, so the
corrected config starts at once. In the test process, every thread and file the build opened
is closed again.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from drivers.registry import DriverConfigError
from gateway.config.loader import load_config
from gateway.service import Station
from gateway.status.database import read_status, service_running
from gateway.status.server import socket_path
from gateway.store.outbox import open_store
from harness.station import AREA, write_config

REFUSED = """
[[sensors]]
name = "tank"
type = "modbus_level"
port = "/dev/ttyUSB9"
register = 5
decimals_register = 5
"""
FIXED = REFUSED.replace("decimals_register = 5\n", "")
WHY = 'sensor "tank" (modbus_level): decimals_register and register must differ'
#: Threads the build starts: the store's committer, the audio worker and notifier, the drivers.
BUILT_THREADS = ("cunxiang-store", "broadcast-worker", "broadcast-notify", "driver-")


def _open_in(folder: Path) -> list[str]:
    """What this process holds open inside `folder` (its file descriptors' targets)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            held.append(target)
    return held


def _run(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RUNTIME_DIRECTORY", "NOTIFY_SOCKET")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )


def test_cunxiang_run_names_the_refused_sensor_exits_78_and_leaves_nothing_locked(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, 1, body=REFUSED)
    database = tmp_path / "station.db"

    done = _run(config)

    assert done.returncode == 78, done.stderr[-3000:]
    assert WHY in done.stderr
    assert "Traceback" not in done.stderr
    assert not socket_path(database, {}).exists()
    assert not service_running(database)
    assert read_status(database, AREA).service_running is False


def test_a_late_failure_closes_every_part_built_before_it(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, 1, body=REFUSED))
    before = {t.ident for t in threading.enumerate()}

    with pytest.raises(DriverConfigError, match="decimals_register and register must differ"):
        asyncio.run(Station(config).run())

    left = [
        t.name
        for t in threading.enumerate()
        if t.ident not in before and t.is_alive() and t.name.startswith(BUILT_THREADS)
    ]
    assert left == []
    assert _open_in(tmp_path) == []
    assert not socket_path(config.storage.path, {}).exists()
    # The lock is released: the store opens at once, in this very process.
    open_store(config).close()
    # The corrected config gets a station that builds.
    fixed = load_config(write_config(tmp_path, 1, body=FIXED))
    station = Station(fixed)

    async def start_then_stop() -> int:
        run = asyncio.create_task(station.run())
        while not station.built:
            await asyncio.sleep(0.01)
        station.stop()
        return await run

    assert asyncio.run(start_then_stop()) == 0
