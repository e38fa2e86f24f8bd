"""kill -9 of the station at random moments during ingest and drain: no committed record is lost."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.mosquitto import Mosquitto
from tests.uplink.conftest import (
    Centre,
    config_data,
    contiguous,
    make_config,
    running,
    write_config,
)

RUNS = 6
RATE = 20_000  # readings per second while a run lasts


def run_until_killed(config_file: Path, run: int, rng: random.Random) -> int:
    """Start a station process, SIGKILL it at a random moment; the last value it called durable."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.uplink.station_process",
            str(config_file),
            str(run),
            str(RATE),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(20), "the station process did not start"
        time.sleep(rng.uniform(0.1, 0.8))
    finally:
        proc.kill()
        proc.wait(10)
        reader.join(10)
    durable = [int(line.split()[1]) for line in lines if line.startswith("durable ")]
    return max(durable)


def test_sigkill_at_random_moments_leaves_no_gap_among_committed_records(
    tmp_path: Path, broker: Mosquitto
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    centre = Centre(broker.port)
    data = config_data(tmp_path, broker.port, sync={"batch_max": 200, "inflight_max": 4})
    config_file = write_config(tmp_path / "gateway.toml", data)
    durable = {run: run_until_killed(config_file, run, rng) for run in range(RUNS)}

    async def drain_the_rest() -> int:
        async with running(make_config(tmp_path, broker.port)) as station:
            await station.until(lambda: station.store.backlog()[0] == 0, 30, "an empty backlog")
            return station.store.last_seq

    try:
        last = asyncio.run(drain_the_rest())
        centre.wait(lambda c: max(c.seqs(), default=0) >= last, 20, f"seq {last}")
        seqs = centre.seqs()
        assert contiguous(seqs) and max(seqs) == last, f"gap in seq (seed {seed})"
        for run, value in durable.items():
            values = {int(r["v"]) for r in centre.readings if r["sensor"] == f"w{run}"}
            lost = set(range(value + 1)) - values
            assert not lost, f"run {run}: {len(lost)} durable readings lost (seed {seed})"
        print(f"seed {seed}: {last} records, {centre.duplicates()} duplicates, durable {durable}")
    finally:
        centre.close()
