"""A station process for kill -9 tests: Store + Uplink ingesting readings until it is killed.

    python -m tests.uplink.station_process CONFIG RUN [RATE]

Adds readings of sensor ``w<RUN>`` with values 0, 1, 2, … at about RATE per second (0: none),
flushes every 50 ms and prints ``durable N`` after each flush, N being the last value that is
now committed. The parent kills it with SIGKILL at random moments and later checks that every
value it saw reported durable reached the centre.
"""

from __future__ import annotations

import asyncio
import sys
import time

from gateway.config.loader import load_config
from gateway.store.outbox import open_store
from gateway.uplink.supervisor import Uplink
from tests.uplink.conftest import service_state


async def main(config_path: str, run: int, rate: float) -> None:
    config = load_config(config_path)
    store = open_store(config)
    uplink = Uplink(config, store, on_downlink=lambda t, p: None, state=service_state)
    task = asyncio.create_task(uplink.run())
    value = 0
    start = time.monotonic()
    while True:
        await asyncio.sleep(0.05)
        target = int((time.monotonic() - start) * rate)
        now = int(time.time() * 1000)
        while value < target:
            store.add_reading(f"w{run}", "water_level_m", float(value), now)
            value += 1
        store.flush()
        print(f"durable {value - 1}", flush=True)
        if task.done():
            task.result()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0))
