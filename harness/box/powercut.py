"""Power cuts of the box: SIGKILL of qemu at random moments while the station ingests and plays.

Why this module exists: one cut is judged the same way by the CI test (tests/box/test_box.py, 5
cuts) and the long run (benchmarks/powercut.py, 50 cuts, table in docs/box.md). One cut:

1. the station runs under systemd in the VM (harness/box/vm.py), simulated sensors
   committing every 0.2 s; every other life gets a signed alert with 3 s of its own audio, and
   on half of those the cut is aimed at the playback (after the centre saw "playing");
2. qemu is SIGKILLed: the guest loses whatever its kernel had not yet written to the raw disk
   image (`cache=none`). The commit probe's last marker says which seq the station had
   committed (`E <seq>` after COMMIT returned) and whether the cut fell inside a transaction
   (`B` with no `E` after it);
3. the VM boots again; before the station starts, cx-boxcheck copies the database and runs
   `PRAGMA integrity_check` and reads its last seq: it must be at least the committed seq
   (a record committed before the cut and gone after it is a lost record);
4. an alert the cut interrupted must be played again, in full ("playing" then "played").

After the last cut the station drains, and the centre must hold every seq up to the last one
committed, never two different records under one seq.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.box.station import wait_active
from harness.box.vm import BoxVM
from harness.faults.common import TOWN_TOPIC, inline_alert
from harness.ledger import Ledger
from harness.station import Centre


@dataclass
class Cut:
    """One power cut and what the next boot found."""

    number: int
    alive_s: float
    aimed_at_playback: bool
    alert: str | None
    hit_playing: bool
    in_commit: bool
    commits_before: int
    committed_seq: int
    boot_s: float = 0.0
    ready_s: float = 0.0
    integrity: str = ""
    seq_after: int = 0
    lost: int = 0
    replayed: bool | None = None


@dataclass
class PowerCutRun:
    """All the cuts of a run and the end state at the centre."""

    cuts: list[Cut] = field(default_factory=list)
    committed_seq: int = 0
    missing_at_centre: list[int] = field(default_factory=list)
    conflicts: int = 0
    duplicates: int = 0

    @property
    def lost(self) -> int:
        return sum(c.lost for c in self.cuts) + len(self.missing_at_centre)

    @property
    def in_commit(self) -> int:
        return sum(c.in_commit for c in self.cuts)

    def summary(self) -> dict[str, Any]:
        cuts = len(self.cuts)
        hit = [c for c in self.cuts if c.hit_playing]
        return {
            "cuts": cuts,
            "cuts_during_a_commit": self.in_commit,
            "fraction_during_a_commit": round(self.in_commit / cuts, 3) if cuts else 0.0,
            "integrity_failures": sum(c.integrity != "ok" for c in self.cuts),
            "committed_records_lost": self.lost,
            "seq_conflicts": self.conflicts,
            "duplicates_at_centre": self.duplicates,
            "cuts_during_playback": len(hit),
            "interrupted_alerts_played_again": sum(bool(c.replayed) for c in hit),
            "committed_seq": self.committed_seq,
            "median_boot_s": _median([c.boot_s for c in self.cuts]),
            "median_ready_s": _median([c.ready_s for c in self.cuts]),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "cuts": [asdict(c) for c in self.cuts],
            "missing_at_centre": self.missing_at_centre[:50],
        }


def _median(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return round(ordered[middle], 1)
    return round((ordered[middle - 1] + ordered[middle]) / 2, 1)


def read_probe(lines: list[str]) -> tuple[bool, int, int]:
    """(cut inside a transaction, last committed seq, commits) from one boot's probe lines."""
    in_commit = False
    committed = 0
    commits = 0
    for line in lines:
        if line == "B":
            in_commit = True
        elif line.startswith("E "):
            in_commit = False
            committed = max(committed, int(line.split()[1]))
            commits += 1
    return in_commit, committed, commits


def boxcheck(vm: BoxVM) -> dict[str, Any]:
    """What cx-boxcheck found on the database before the station started, this boot."""
    assert vm.agent is not None
    deadline = time.monotonic() + 120
    while True:
        done = vm.agent.run("cat /run/cx-boxcheck/result.json", timeout=30)
        if done.code == 0 and done.out.strip():
            result: dict[str, Any] = json.loads(done.out)
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"cx-boxcheck left no result: {done.err}")
        time.sleep(1)


def power_cuts(
    vm: BoxVM,
    ledger: Ledger,
    centre: Centre,
    *,
    cuts: int,
    seed: int,
    alive_s: tuple[float, float] = (1.0, 8.0),
    clip_s: float = 3.0,
    ready_timeout: float = 900.0,
    log: Any = None,
) -> PowerCutRun:
    """Cut the power `cuts` times; the VM must be booted with the station active on entry.

    Leaves the VM booted after the last cut with everything drained to the centre.
    """
    assert vm.agent is not None
    rng = random.Random(seed)
    run = PowerCutRun()
    # The broker queues alerts for the station's session only once it has subscribed: wait
    # for its first state before the first alert (later ones wait in its persistent session).
    ledger.wait(lambda: ledger.states, ready_timeout, "the station's first state")
    for number in range(cuts):
        started = time.monotonic()
        alert_id = None
        aimed = False
        if number % 2 == 0:
            freq = 300 + 25 * number
            alert_id, _pcm, raw = inline_alert(centre, freq, clip_s, level="orange")
            ledger.publish(TOWN_TOPIC, raw)
            aimed = number % 4 == 0
        if aimed and alert_id is not None:

            def playing(a: str = alert_id) -> bool:
                return "playing" in ledger.statuses(a)

            ledger.wait(playing, ready_timeout, "playing")
            time.sleep(rng.uniform(0.1, clip_s * 0.8))
        else:
            time.sleep(rng.uniform(*alive_s))
        statuses = ledger.statuses(alert_id) if alert_id else []
        hit_playing = statuses.count("playing") > statuses.count("played")
        vm.power_cut()
        in_commit, committed, commits = read_probe(vm.probe_lines())
        run.committed_seq = max(run.committed_seq, committed)
        cut = Cut(
            number=number,
            alive_s=round(time.monotonic() - started, 2),
            aimed_at_playback=aimed,
            alert=alert_id,
            hit_playing=hit_playing,
            in_commit=in_commit,
            commits_before=commits,
            committed_seq=committed,
        )
        run.cuts.append(cut)
        booted = time.monotonic()
        cut.boot_s = round(vm.start(), 1)
        found = boxcheck(vm)
        cut.integrity = str(found.get("integrity", "no database"))
        cut.seq_after = int(found.get("max_seq", 0))
        cut.lost = max(0, run.committed_seq - cut.seq_after)
        states = len(ledger.states)
        wait_active(vm.agent, ready_timeout)
        cut.ready_s = round(time.monotonic() - booted, 1)

        def fresh_state(n: int = states) -> bool:
            return len(ledger.states) > n

        # Connected again (a fresh state at the centre) before the next life's cut.
        ledger.wait(fresh_state, ready_timeout, "a state after boot")
        if hit_playing and alert_id is not None:
            before = statuses.count("playing")

            def played_again(a: str = alert_id, n: int = before) -> bool:
                now = ledger.statuses(a)
                return now.count("playing") > n and "played" in now[n:]

            try:
                ledger.wait(played_again, clip_s + 120, f"{alert_id} played again")
                cut.replayed = True
            except AssertionError:
                cut.replayed = False
        if log is not None:
            log(cut)
    # Drain: every seq committed by the end must reach the centre.
    deadline = time.monotonic() + 300
    upto = run.committed_seq
    while ledger.missing(upto) and time.monotonic() < deadline:
        time.sleep(1)
    run.missing_at_centre = ledger.missing(upto)
    run.conflicts = len(ledger.conflicts)
    run.duplicates = ledger.duplicates()
    return run
