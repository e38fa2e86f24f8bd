"""Quick figures for the store and the uplink: ingest rate, drain rate, flash bytes and CPU per reading.

Why this script exists: docs/performance.md § Targets sets ingest ≥ 100,000 durable readings/s, drain
≥ 300,000 readings/s to a loopback broker at QoS 1 with nothing lost or doubled, ≤ 120 bytes
written per reading and ≤ 20 µs CPU per reading. This measures those on this machine with a
private Mosquitto, in a few seconds; the full benchmark suite comes later.

    python benchmarks/uplink_quick.py [--readings 100000] [--runs 3]

The centre is a separate process (a paho subscriber with a persistent session) that counts
every reading it receives, so "lost" and "duplicates" are what the centre would see. Bytes
written come from /proc/self/io (write_bytes) of the station process over ingest, drain and
marking sent, including the final checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.config.model import Config
from gateway.store.outbox import Store, open_store
from gateway.uplink.supervisor import Uplink
from harness.mosquitto import Mosquitto

STATION = "bench-station-01"
SENSORS = [f"s-{i}" for i in range(10)]


def write_bytes() -> int:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["write_bytes"])


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or its peak since the last reset (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    """Start a new VmHWM peak (Linux: writing 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def subscriber(port: int, expected: int, ready: Path, timeout: float) -> None:
    """The centre: count readings, duplicates and the time from first to last message."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    seen = bytearray(expected + 2)
    result = {"received": 0, "duplicates": 0, "first": 0.0, "last": 0.0, "messages": 0}
    done = False

    def on_connect(client: mqtt.Client, *_: object) -> None:
        client.subscribe(f"cx/v1/station/{STATION}/telemetry", qos=1)

    def on_subscribe(*_: object) -> None:
        ready.write_text("ok")

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal done
        now = time.perf_counter()
        if not result["messages"]:
            result["first"] = now
        result["messages"] += 1
        result["last"] = now
        for reading in json.loads(msg.payload)["readings"]:
            seq = reading["seq"]
            if seq >= len(seen):
                seen.extend(bytes(seq - len(seen) + 1))
            if seen[seq]:
                result["duplicates"] += 1
            else:
                seen[seq] = 1
                result["received"] += 1
        if result["received"] >= expected:
            done = True

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-centre", clean_session=False)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    deadline = time.monotonic() + timeout
    while not done and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    result["lost"] = expected - result["received"]
    print(json.dumps(result), flush=True)


def config(port: int, db: Path) -> Config:
    return Config.model_validate(
        {
            "station": {"id": STATION, "area": "371581001201"},
            "mqtt": {
                "port": port,
                "allow_plaintext": True,
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1.0,
            },
            "storage": {"path": db, "max_mb": 512},
        }
    )


def one_run(count: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="uplink-bench-"))
    with Mosquitto() as broker:
        cfg = config(broker.port, tmp / "gateway.db")
        ready = tmp / "ready"
        centre = subprocess.Popen(
            [sys.executable, __file__, "--subscriber", str(broker.port), str(count), str(ready)],
            stdout=subprocess.PIPE,
            text=True,
        )
        while not ready.exists():
            time.sleep(0.01)
        bytes0, cpu0 = write_bytes(), cpu_s()
        store = open_store(cfg)
        idle_rss = rss_mb()
        ts = int(time.time() * 1000)
        start = time.perf_counter()
        for i in range(count):
            store.add_reading(SENSORS[i % 10], "water_level_m", (i % 1000) / 100, ts + i)
        store.flush()
        ingest_s = time.perf_counter() - start
        ingest_peak = rss_mb("VmHWM")
        reset_peak_rss()
        drain_s = asyncio.run(drain(cfg, store))
        drain_peak = rss_mb("VmHWM")
        store.close()
        cpu = cpu_s() - cpu0
        written = write_bytes() - bytes0
        out, _ = centre.communicate(timeout=120)
        seen = json.loads(out)
    centre_s = max(seen["last"] - seen["first"], 1e-9)
    return {
        "ingest_per_s": count / ingest_s,
        "drain_per_s_station": count / drain_s,
        "drain_per_s_centre": seen["received"] / centre_s,
        "lost": seen["lost"],
        "duplicates": seen["duplicates"],
        "bytes_per_reading": written / count,
        "cpu_us_per_reading": cpu / count * 1e6,
        "rss_mb_idle": idle_rss,
        "rss_mb_peak_ingest": ingest_peak,
        "rss_mb_peak_drain": drain_peak,
    }


async def drain(cfg: Config, store: Store) -> float:
    uplink = Uplink(cfg, store, on_downlink=lambda t, p: None, state=lambda: {"version": "bench"})
    start = time.perf_counter()
    task = asyncio.create_task(uplink.run())
    while store.backlog()[0] > 0:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - start
    await uplink.stop()
    await task
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the medians to this file")
    parser.add_argument("--subscriber", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        port, expected, ready = args.subscriber
        subscriber(int(port), int(expected), Path(ready), timeout=120)
        return
    runs = [one_run(args.readings) for _ in range(args.runs)]
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(f"{args.readings} readings, {args.runs} runs, medians (CPU count {os.cpu_count()}):")
    for key, value in medians.items():
        print(f"  {key:22} {value:14,.1f}")
    if args.json:
        args.json.write_text(
            json.dumps({"readings": args.readings, "runs": runs, "median": medians})
        )


if __name__ == "__main__":
    main()
