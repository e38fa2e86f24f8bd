"""A station that cannot be built stops at once, says why, and leaves nothing open.

A Modbus level transmitter whose decimals register is its value register passes the config's
schema (`cunxiang check-config` says OK); only its driver refuses it, and the driver is the
last part the service builds — after the store, the audio, the intake and the uplink exist
(gateway/parts.py). Every thread and file the build opened is closed again, the database is
not locked and no status socket is left, so the corrected config starts at once.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from drivers.registry import DriverConfigError
from gateway.config import load_config
from gateway.service import Station
from gateway.status.server import socket_path
from gateway.store.outbox import Store
from tests.support.station import write_config

REFUSED = """
[[sensors]]
name = "tank"
type = "modbus_level"
port = "/dev/ttyUSB9"
register = 5
decimals_register = 5
"""
FIXED = REFUSED.replace("decimals_register = 5\n", "")
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
    storage = config.storage
    Store(
        storage.path,
        station_id=config.station.id,
        max_mb=storage.max_mb,
        max_age_days=storage.max_age_days,
        commit_interval_s=storage.commit_interval_s,
    ).close()
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
