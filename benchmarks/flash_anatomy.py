"""Where the bytes written to flash go: the store's commits taken apart, page by page.

Why this module exists: at ten readings a second the service writes several kilobytes per
second — per commit, not per reading — and every one of them wears the SD card. This drives
`gateway.store.outbox.Store` as the service does (one commit of N readings per simulated second, each
commit acknowledged by the uplink a moment later, the status touched as the uplink does) and
reports, per commit:

* the write_bytes the kernel counted (/proc/self/io: whole 4 KiB page-cache pages);
* the WAL frames appended (one frame = one 1 KiB database page + a 24-byte header), by what
  they hold — the outbox's newest leaf, a new leaf and its parent when a leaf fills, page 1
  (the database size in the header changes whenever the file grows), ``sqlite_sequence``
  (AUTOINCREMENT's high-water mark), the ``state`` table;
* the 4 KiB pages of the WAL file those frames touched (what fsync makes the card write);
* the rest: checkpoints copying pages into the database file, and the WAL index (-shm).

    python -m benchmarks.flash_anatomy [--per-commit 10] [--commits 5000]
    python -m benchmarks.flash_anatomy --sweep      # bytes per reading for 1 … 500 per commit

Time is simulated (one commit per second of a fake clock the store reads), so the store's
5-second state saves fall as they would in service while thousands of commits (and several
checkpoints) take seconds. The fsync of every commit is real.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sqlite3
import struct
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway.store import budget, state_rows
from gateway.store.outbox import Store
from harness import procstat
from harness.station import ROOT

SENSORS = tuple(f"sim-{n}" for n in range(10))
OS_PAGE = 4096
WAL_HEADER = 32
FRAME_HEADER = 24
#: Offset of mxFrame (the last valid frame) in the WAL index header at the start of -shm.
SHM_MXFRAME = 16


class FakeClock:
    """time.monotonic() for the store only: one simulated second per commit."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def namespace(self) -> SimpleNamespace:
        """A stand-in for the `time` module as the store's modules see it."""
        return SimpleNamespace(
            monotonic=lambda: self.now, time=time.time, time_ns=time.time_ns, sleep=time.sleep
        )


class WalWatcher:
    """Reads which pages each commit appended to the WAL (from the -shm index and WAL file)."""

    def __init__(self, db: Path) -> None:
        self.wal = Path(f"{db}-wal")
        self.shm = Path(f"{db}-shm")
        self.last = 0
        self.page_size = 1024

    def _mx_frame(self) -> int:
        with self.shm.open("rb") as file:
            file.seek(SHM_MXFRAME)
            return int(struct.unpack("<I", file.read(4))[0])

    def new_frames(self) -> list[int]:
        """Page numbers of the frames appended since the last call (after a restart: all)."""
        mx = self._mx_frame()
        first = self.last + 1 if mx >= self.last else 1
        pages = []
        size = FRAME_HEADER + self.page_size
        with self.wal.open("rb") as file:
            for frame in range(first, mx + 1):
                file.seek(WAL_HEADER + (frame - 1) * size)
                pages.append(int(struct.unpack(">I", file.read(4))[0]))
        self.last = mx
        return pages

    def os_pages(self, frames_from: int, count: int) -> int:
        """4 KiB pages of the WAL file covered by `count` frames starting at frame `frames_from`."""
        if not count:
            return 0
        size = FRAME_HEADER + self.page_size
        start = WAL_HEADER + (frames_from - 1) * size
        end = start + count * size - 1
        return end // OS_PAGE - start // OS_PAGE + 1


def _page_owners(db: Path) -> dict[int, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        owners = {1: "page 1 (header)"}
        for name, pageno, kind in conn.execute("SELECT name, pageno, pagetype FROM dbstat"):
            if pageno != 1:
                owners[int(pageno)] = f"{name} {kind}" if name == "outbox" else str(name)
        return owners
    finally:
        conn.close()


def anatomy(per_commit: int, commits: int, warmup: int = 300) -> dict[str, Any]:
    """Drive a store at `per_commit` readings per commit; what each commit costs, on average."""
    folder = Path(tempfile.mkdtemp(prefix="flash-", dir=ROOT / "benchmarks" / "results"))
    clock = FakeClock()
    # The store alone reads the fake clock: its state saves and its storage budget.
    namespaces = [vars(budget), vars(state_rows)]
    real_time = time
    for namespace in namespaces:
        namespace["time"] = clock.namespace()
    try:
        return _drive(folder / "station.db", clock, per_commit, commits, warmup)
    finally:
        for namespace in namespaces:
            namespace["time"] = real_time
        shutil.rmtree(folder, ignore_errors=True)


def _drive(
    db: Path, clock: FakeClock, per_commit: int, commits: int, warmup: int
) -> dict[str, Any]:
    store = Store(db, station_id="bench-0001", max_mb=4096, max_age_days=30, commit_interval_s=1e6)
    watcher = WalWatcher(db)
    ts = int(time.time() * 1000)
    frames: collections.Counter[int] = collections.Counter()
    wal_os_pages = 0
    n_frames = 0
    for n in range(warmup + commits):
        if n == warmup:
            before = procstat.sample()
            frames.clear()
            wal_os_pages = n_frames = 0
        for k in range(per_commit):
            sensor = SENSORS[k % len(SENSORS)]
            store.add_reading(sensor, "water_level_m", round(1.5 + (n * 7 + k) % 997 / 331, 6), ts)
        store._writer.commit(None)  # what the committer thread does every commit_interval_s
        store.mark_sent([(store.last_seq - per_commit + 1, store.last_seq)])  # the PUBACK
        store.set_status(last_publish_ts=ts)  # as the uplink does on every PUBACK
        start = watcher.last + 1
        pages = watcher.new_frames()
        if pages and start > watcher.last:  # the WAL restarted after a checkpoint
            start = 1
        frames.update(pages)
        n_frames += len(pages)
        wal_os_pages += watcher.os_pages(start, len(pages))
        clock.now += 1.0
        ts += 1000
    after = procstat.sample()
    store.close()
    owners = _page_owners(db)
    by_owner: collections.Counter[str] = collections.Counter()
    for page, count in frames.items():
        by_owner[owners.get(page, "freed page")] += count
    written = after.write_bytes - before.write_bytes
    return {
        "readings_per_commit": per_commit,
        "commits": commits,
        "write_bytes_per_commit": written / commits,
        "bytes_per_reading": written / commits / per_commit,
        "wal_frames_per_commit": n_frames / commits,
        "wal_frames_by_page": {k: v / commits for k, v in by_owner.most_common()},
        "wal_4k_pages_per_commit": wal_os_pages / commits,
        "wal_bytes_per_commit": wal_os_pages * OS_PAGE / commits,
        "other_bytes_per_commit": (written - wal_os_pages * OS_PAGE) / commits,
    }


def _print(result: dict[str, Any]) -> None:
    print(
        f"{result['readings_per_commit']} readings per commit, {result['commits']} commits: "
        f"{result['write_bytes_per_commit']:,.0f} B written per commit "
        f"= {result['bytes_per_reading']:,.0f} B per reading"
    )
    print(
        f"  WAL: {result['wal_frames_per_commit']:.2f} frames per commit touching "
        f"{result['wal_4k_pages_per_commit']:.2f} 4 KiB pages "
        f"({result['wal_bytes_per_commit']:,.0f} B); checkpoints and -shm: "
        f"{result['other_bytes_per_commit']:,.0f} B"
    )
    for owner, per in result["wal_frames_by_page"].items():
        print(f"    {per:6.3f} frames/commit  {owner}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--per-commit", type=int, default=10)
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--sweep", action="store_true", help="1, 10, 50, 100, 500 per commit")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = (1, 10, 50, 100, 500) if args.sweep else (args.per_commit,)
    results = []
    for size in sizes:
        results.append(anatomy(size, max(200, args.commits * 10 // max(size, 10))))
        _print(results[-1])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
