"""Ingest: readings into the station's store until they are durable, in a process of its own.

Why this module exists: "durable readings/s" is the rate at which `Store.add_reading` takes
readings *and* commits them (the clock stops when `Store.flush()` has returned, i.e. after the
last COMMIT with its fsync). It runs as its own process so that its CPU time and the bytes it
writes (/proc/self/io) are the store's alone; the database it leaves behind is the backlog the
drain figure sends.

    python -m benchmarks.ingest --db PATH --readings N

prints one JSON object: seconds (add + flush), cpu_s and write_bytes from opening the store to
closing it (the close includes the final checkpoint into the database file), peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from benchmarks.rig import STATION_ID
from gateway.store.outbox import Store
from harness import procstat

SENSORS = tuple(f"sim-{n}" for n in range(10))


def ingest(db: Path, count: int, commit_interval_s: float = 1.0) -> dict[str, float]:
    """Add `count` readings of 10 sensors to a new store at `db`; the costs, as a dict."""
    before = procstat.sample()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    store = Store(
        db,
        station_id=STATION_ID,
        max_mb=4096,
        max_age_days=30,
        commit_interval_s=commit_interval_s,
    )
    ts = int(time.time() * 1000) - count
    start = time.perf_counter()
    for i in range(count):
        store.add_reading(SENSORS[i % 10], "water_level_m", (i % 1000) / 100, ts + i)
    store.flush()
    seconds = time.perf_counter() - start
    last = store.last_seq
    store.close()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    after = procstat.sample()
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return {
        "readings": count,
        "last_seq": last,
        "seconds": seconds,
        "cpu_s": cpu,
        "write_bytes": after.write_bytes - before.write_bytes,
        "maxrss_kb": after.hwm_kb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--readings", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(ingest(args.db, args.readings)), flush=True)


if __name__ == "__main__":
    main()
