"""The long power-cut run (issue 18): the box VM's power cut `--cuts` (50) times, with a table.

Why this script exists: tests/box/test_box.py cuts the power 5 times, enough to fail CI on a
lost record but too few to say how often a cut lands inside a commit. This boots the same box
(the .deb from scripts/build-deb installed into the image from scripts/vm-image, real systemd,
qemu TCG, the database on a raw image with cache=none) and cuts its power many times:

    python benchmarks/powercut.py                  # 50 cuts, about 1 to 2 hours under TCG
    python benchmarks/powercut.py --cuts 10 --seed 7

What one cut does and checks is in harness/box/powercut.py: SIGKILL of qemu at a random
moment (or aimed at an alert's playback), then at the next boot `PRAGMA integrity_check` and the
last seq on the disk against the last seq the station had committed (its commit probe), and an
interrupted alert must be played again. At the end the centre must hold every committed seq.
Prints a Markdown table (one row per cut, then a summary) for docs/box.md, and writes everything
as JSON to benchmarks/results/powercut-<time>.json. Exit status 1 if a committed record was
lost, the database failed its check, or an interrupted alert was not played again.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.box.powercut import Cut, power_cuts
from harness.box.station import box_config, wait_active
from harness.box.vm import PROBE_LINKS, BoxVM, build_deb, prepare_disk, probe_files
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.station import Centre

RESULTS = Path(__file__).resolve().parent / "results"
HEADER = (
    "| cut | alive s | aimed at playback | cut during playback | cut during a commit "
    "| committed seq | seq on disk after boot | integrity | lost | played again "
    "| boot s | ready s |\n"
    "|---:|---:|:-:|:-:|:-:|---:|---:|:-:|---:|:-:|---:|---:|"
)


def row(cut: Cut) -> str:
    yes = {True: "yes", False: "no", None: "—"}
    return (
        f"| {cut.number + 1} | {cut.alive_s:.1f} | {yes[cut.aimed_at_playback]} "
        f"| {yes[cut.hit_playing]} | {yes[cut.in_commit]} | {cut.committed_seq} "
        f"| {cut.seq_after} | {cut.integrity} | {cut.lost} "
        f"| {yes[cut.replayed] if cut.hit_playing else '—'} | {cut.boot_s:.0f} "
        f"| {cut.ready_s:.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--arch", default="amd64")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    started = time.monotonic()
    load_start = os.getloadavg()
    print(f"power cuts: {args.cuts}, seed {seed}, load average {load_start[0]:.1f}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="cunxiang-powercut-"))
    centre = Centre()
    deb = build_deb(args.arch)
    files = {**probe_files(), "/etc/cunxiang/gateway.toml": (box_config(centre), 0o640)}
    disk = prepare_disk(deb, folder, files, links=PROBE_LINKS, arch=args.arch)
    with Mosquitto() as broker:
        ledger = Ledger(port=broker.port)
        vm = BoxVM(disk, folder, broker.port, arch=args.arch)
        try:
            vm.start()
            assert vm.agent is not None
            wait_active(vm.agent, 600)
            print(HEADER, flush=True)
            run = power_cuts(
                vm,
                ledger,
                centre,
                cuts=args.cuts,
                seed=seed,
                ready_timeout=900,
                log=lambda cut: print(row(cut), flush=True),
            )
        finally:
            vm.close()
            ledger.close()
    summary = run.summary()
    minutes = (time.monotonic() - started) / 60
    load_end = os.getloadavg()
    print()
    for key, value in summary.items():
        print(f"- {key.replace('_', ' ')}: {value}")
    print(f"- run took {minutes:.0f} min; load average {load_start[0]:.1f} -> {load_end[0]:.1f}")
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"powercut-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps({"seed": seed, "minutes": round(minutes, 1), **run.as_json()}, indent=2)
    )
    print(f"- JSON: {out}")
    failed = (
        summary["committed_records_lost"]
        or summary["integrity_failures"]
        or summary["seq_conflicts"]
        or summary["interrupted_alerts_played_again"] != summary["cuts_during_playback"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
