"""The long fault run (issue 7): every scenario of the fault suite at full size, plus a soak.

Why this script exists: tests/faults/ runs each scenario small enough for CI; this runs them at
the sizes docs/faults.md and issue 7 name, and the soak that only makes sense over an hour:

    python benchmarks/chaos.py                      # everything, about 80 minutes
    python benchmarks/chaos.py --minutes 5          # the soak shortened to 5 minutes
    python benchmarks/chaos.py --only 1,6 --kills 20

1. SIGKILL of the service at `--kills` (100) random moments during ingest, drain and broadcast;
2. the broker SIGTERM-restarted and SIGKILL-restarted `--restarts` (20) times each during a
   drain of `--records` (200,000); SIGKILL losses are the broker's and are repaired by `resend`;
3. a network cut of `--cut-s` (30) s and then 30 % packet loss for `--loss-s` (60) s, the broker
   in its own network namespace (skipped, saying why, where namespaces are not allowed);
4. a full disk for `--full-s` (150) s at 1,000 readings/s, with the real 100,000-reading memory
   bound (skipped, saying why, where a tmpfs cannot be mounted);
5. garbage on every serial port for `--serial-minutes` (5);
6. `--messages` (10,000) hostile downlink messages, five of them 40 MiB, with the real one-minute folding window,
   and 6b: an envelope key with a lone surrogate, then a backlog and a restart (it once broke
   the store for good);
7. a soak of `--minutes` (60) with 10 sensors at 1 Hz and the broker away for 30 s every 5
   minutes (every half of the run when it is shorter than 10 minutes).

Each scenario runs the real `cunxiang run` against a private Mosquitto; see
harness/faults/__init__.py for what each does and counts. At the end a table gives, per
scenario: records lost after commit, duplicates, forged or replayed messages that made sound,
crashes, and the scenario's key figures. Everything is also written as JSON to
benchmarks/results/chaos-<time>.json. Exit status 1 if any scenario lost a committed record,
made a forbidden sound or crashed.

Runs as root for scenarios 3 and 4 (namespaces, tmpfs); nothing leaves loopback or the
namespaces the run makes.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import faults as fs
from harness.faults import ScenarioResult

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="soak length (scenario 7)")
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="scenarios to run, e.g. 1,6")
    parser.add_argument("--seed", type=int, default=None, help="seed for every random choice")
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--cut-s", type=float, default=30.0)
    parser.add_argument("--loss-s", type=float, default=60.0)
    parser.add_argument("--full-s", type=float, default=150.0)
    parser.add_argument("--serial-minutes", type=float, default=5.0)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/)")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace, seed: int) -> list[tuple[str, Callable[[Path], ScenarioResult]]]:
    """The scenarios to run, in order, each as (number, run(folder))."""
    soak_every = 300.0 if args.minutes >= 10 else max(10.0, args.minutes * 30)
    soak_outage = min(30.0, soak_every / 3)
    every: list[tuple[str, Callable[[Path], ScenarioResult]]] = [
        ("1", lambda d: fs.kill9(d, kills=args.kills, seed=seed, seed_per_run=2000)),
        (
            "2",
            lambda d: fs.broker_restarts(
                d / "term", records=args.records, restarts=args.restarts, seed=seed, hard=False
            ),
        ),
        (
            "2",
            lambda d: fs.broker_restarts(
                d / "kill", records=args.records, restarts=args.restarts, seed=seed, hard=True
            ),
        ),
        ("3", lambda d: fs.network_cut(d, cut_s=args.cut_s, loss_s=args.loss_s)),
        ("4", lambda d: fs.full_disk(d, full_s=args.full_s, disk_kib=8192, buffered_readings=None)),
        ("5", lambda d: fs.serial_garbage(d, seconds=args.serial_minutes * 60, seed=seed)),
        (
            "6",
            lambda d: fs.hostile_downlink(
                d, messages=args.messages, seed=seed, window_s=None, giants=5, giant_mib=(40, 40)
            ),
        ),
        ("6", lambda d: fs.surrogate_key(d)),
        (
            "7",
            lambda d: fs.soak(
                d,
                minutes=args.minutes,
                outage_every_s=soak_every,
                outage_s=soak_outage,
                progress=lambda line: print(f"  {line}", flush=True),
            ),
        ),
    ]
    wanted = {part.strip() for part in args.only.split(",")}
    return [(number, run) for number, run in every if number in wanted]


def key_figures(result: ScenarioResult) -> str:
    """The few details worth a glance in the table."""
    d = result.details
    picks = [
        "duplicates_per_committed_record",
        "lost_before_resend",
        "repaired_by_resend",
        "kills_during_playback",
        "broadcasts_replayed_after_kill",
        "link_back_to_flowing_s",
        "readings_delivered_during_loss",
        "dropped_reported",
        "unreported_loss",
        "alarms",
        "readings_with_values_no_device_sent",
        "rss_growth_kib_after_warmup",
        "mismatch_count",
        "handled_per_s",
        "rss_kib_peak",
        "silently_lost_readings",
        "committed_missing_at_centre",
        "outages",
    ]
    shown = [f"{k}={d[k]}" for k in picks if k in d]
    if "rss_kib" in d and "open_fds" in d:
        rss, fds = d["rss_kib"], d["open_fds"]
        shown.append(f"rss KiB first/last/max={rss['first']}/{rss['last']}/{rss['max']}")
        shown.append(f"fds first/last/max={fds['first']}/{fds['last']}/{fds['max']}")
    return ", ".join(shown)


def table(results: list[ScenarioResult]) -> str:
    head = f"{'scenario':<58} {'lost':>5} {'dup':>8} {'sound':>5} {'crash':>5}  key figures"
    lines = [head, "-" * len(head)]
    for r in results:
        if r.skipped:
            lines.append(f"{r.name:<58} SKIPPED: {r.skipped}")
            continue
        lines.append(
            f"{r.name[:58]:<58} {r.lost:>5} {r.duplicates:>8} {r.sounded:>5} {r.crashes:>5}  "
            f"{key_figures(r)}"
        )
    return "\n".join(lines)


def run_one(number: str, run: Callable[[Path], ScenarioResult], root: Path) -> ScenarioResult:
    folder = Path(tempfile.mkdtemp(prefix=f"chaos-{number}-", dir=root))
    started = time.monotonic()
    try:
        result = run(folder)
    except Exception as exc:  # a scenario that cannot finish is itself a finding
        result = ScenarioResult(f"{number} (did not finish)")
        result.crashes = 1
        result.notes.append(f"{type(exc).__name__}: {exc}")
    result.details["scenario_s"] = round(time.monotonic() - started, 1)
    return result


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"chaos: seed {seed} (repeat with --seed {seed})", flush=True)
    results: list[ScenarioResult] = []
    root = Path(tempfile.mkdtemp(prefix="cunxiang-chaos-"))
    for number, run in plan(args, seed):
        print(f"chaos: scenario {number} …", flush=True)
        result = run_one(number, run, root)
        results.append(result)
        print(f"  {result.headline()}  ({result.details.get('scenario_s')} s)", flush=True)
        for note in result.notes[:5]:
            print(f"    {note}", flush=True)
    print()
    print(table(results))
    out = args.out or RESULTS / f"chaos-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "seed": seed,
        "argv": argv,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "finished": datetime.now(UTC).isoformat(),
        "scenarios": [r.as_json() for r in results],
    }
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str))
    print(f"\nchaos: results in {out}")
    failed = [r for r in results if not r.skipped and (r.lost or r.sounded or r.crashes)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
