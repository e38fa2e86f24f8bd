"""The box: the package installed into Debian 12, booted under real systemd in qemu (TCG).

One VM for the module (booting takes about a minute under TCG): the tests run in order on it.
The station's broker is a Mosquitto on the host's 127.0.0.1, reached from the guest only
through qemu's user-mode network with `restrict=on` and one forward (harness/box/vm.py).
The last test cuts the power 5 times (the long run, 50 cuts, is benchmarks/powercut.py and its
table is in docs/box.md).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.box.agent import Agent
from harness.box.powercut import power_cuts
from harness.box.station import box_config, unit_state, wait_active
from harness.box.vm import PROBE_LINKS, BoxVM, build_deb, prepare_disk, probe_files
from harness.faults.common import TOWN_TOPIC, inline_alert
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.station import Centre

pytestmark = [pytest.mark.slow]

#: Under TCG the station takes one to five minutes to start, depending on the machine's load
#: (the guest's CPU is emulated); these bound a hang, not the speed.
READY_S = 900.0


@dataclass
class Box:
    vm: BoxVM
    ledger: Ledger
    centre: Centre
    folder: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def agent(self) -> Agent:
        assert self.vm.agent is not None
        return self.vm.agent


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    folder = tmp_path_factory.mktemp("box")
    centre = Centre()
    started = time.monotonic()
    deb = build_deb()
    files = {**probe_files(), "/etc/cunxiang/gateway.toml": (box_config(centre), 0o640)}
    disk = prepare_disk(deb, folder, files, links=PROBE_LINKS)
    timings = {"package_and_disk_s": time.monotonic() - started}
    with Mosquitto() as broker:
        ledger = Ledger(port=broker.port)
        vm = BoxVM(disk, folder, broker.port)
        try:
            booted = time.monotonic()
            timings["agent_up_s"] = vm.start()
            assert vm.agent is not None
            wait_active(vm.agent, READY_S)
            timings["ready_s"] = time.monotonic() - booted
            yield Box(vm, ledger, centre, folder, timings)
        finally:
            vm.close()
            ledger.close()
            report = os.environ.get("CUNXIANG_BOX_REPORT")
            if report:
                Path(report).write_text(json.dumps(timings, indent=2))
            print(f"\nbox timings: { {k: round(v, 1) for k, v in timings.items()} }")


@pytest.mark.timeout(1500)
def test_the_service_is_ready_under_systemd_and_readings_reach_the_centre(box: Box) -> None:
    state = unit_state(box.agent)
    assert state["ActiveState"] == "active" and state["SubState"] == "running"
    box.ledger.wait(lambda: box.ledger.readings_of("sim-0"), 120, "readings from the box")
    enabled = box.agent.run("systemctl is-enabled cunxiang.service").out.strip()
    assert enabled == "enabled"


SANDBOX_PATHS = (
    "/var/lib/cunxiang/.w /var/cache/cunxiang/.w /tmp/.w /etc/cunxiang/.w /etc/.w /usr/.w "
    "/opt/cunxiang/.w /var/log/.w /root/.w /home/.w"
)


def writable_in_service(box: Box, pid: str, as_user: bool) -> set[str]:
    """Which of SANDBOX_PATHS a write succeeds on, inside the service's mount namespace."""
    user = "setpriv --reuid=cunxiang --regid=cunxiang --init-groups" if as_user else ""
    script = f"""
for path in {SANDBOX_PATHS}; do
    if nsenter -t {pid} -m -- {user} sh -c "echo x > $path" 2>/dev/null; then
        echo "$path writable"; nsenter -t {pid} -m -- rm -f "$path"
    else
        echo "$path refused"
    fi
done
"""
    done = box.agent.run(script, timeout=120).check("sandbox probe")
    verdicts = dict(line.rsplit(" ", 1) for line in done.out.splitlines())
    assert len(verdicts) == len(SANDBOX_PATHS.split()), done.out
    return {path.removesuffix("/.w") for path, verdict in verdicts.items() if verdict == "writable"}


@pytest.mark.timeout(300)
def test_the_sandbox_holds_in_the_running_service(box: Box) -> None:
    """Writes from inside the service's own mount namespace: only its directories take them."""
    pid = unit_state(box.agent)["MainPID"]
    # The service's user writes only to its state, cache and private /tmp.
    assert writable_in_service(box, pid, as_user=True) == {
        "/var/lib/cunxiang",
        "/var/cache/cunxiang",
        "/tmp",
    }
    # Even root in that namespace finds the system read-only (ProtectSystem=strict) and no
    # home folders (ProtectHome=yes). /etc/cunxiang is mounted writable there (systemd does so
    # for ConfigurationDirectory=); for the service it is read-only through its owner and mode
    # (root:cunxiang 0750, files 0640), as the check above shows.
    assert writable_in_service(box, pid, as_user=False) == {
        "/var/lib/cunxiang",
        "/var/cache/cunxiang",
        "/tmp",
        "/etc/cunxiang",
    }
    # /tmp is the service's own (PrivateTmp): what it writes there is not the system's /tmp.
    box.agent.run(f"nsenter -t {pid} -m -- touch /tmp/.private").check("private tmp")
    assert ".private" not in box.agent.run("ls -a /tmp").out.split()

    security = box.agent.run("systemd-analyze security --no-pager cunxiang.service", timeout=120)
    match = re.search(r"Overall exposure level for cunxiang\.service: ([\d.]+) (\w+)", security.out)
    assert match, security.out + security.err
    box.timings["exposure"] = float(match.group(1))
    assert float(match.group(1)) <= 3.0 and match.group(2) == "OK", match.group(0)


@pytest.mark.timeout(300)
def test_an_alert_plays_on_the_box(box: Box) -> None:
    alert_id, _pcm, raw = inline_alert(box.centre, 440, 1.0, level="orange")
    box.ledger.publish(TOWN_TOPIC, raw)
    box.ledger.wait(lambda: "played" in box.ledger.statuses(alert_id), 120, "the alert played")
    assert box.ledger.statuses(alert_id).count("playing") == 1


@pytest.mark.timeout(600)
def test_a_config_error_keeps_the_unit_failed_with_the_error_in_the_journal(box: Box) -> None:
    agent = box.agent
    config = "/etc/cunxiang/gateway.toml"
    agent.run(f"cp -p {config} /root/gateway.toml.good").check("backup")
    agent.run(f"sed -i 's/^clock = /bogus_key = 1\\nclock = /' {config}").check("break")
    agent.run("systemctl restart cunxiang.service", timeout=300)
    deadline = time.monotonic() + READY_S
    state = unit_state(agent)
    while state["ActiveState"] != "failed" and time.monotonic() < deadline:
        time.sleep(1)
        state = unit_state(agent)
    assert state["ActiveState"] == "failed" and state["ExecMainStatus"] == "78", state
    time.sleep(8)  # RestartSec=2: a unit that restarted would have done so by now
    assert unit_state(agent)["ActiveState"] == "failed"
    journal = agent.run("journalctl -u cunxiang.service -n 30 --no-pager").out
    assert "bogus_key" in journal and "problem" in journal, journal

    agent.run(f"cp -p /root/gateway.toml.good {config}").check("restore")
    started = time.monotonic()
    agent.run("systemctl restart cunxiang.service", timeout=300)
    wait_active(agent, READY_S)
    box.timings["restart_to_ready_s"] = time.monotonic() - started


@pytest.mark.timeout(900)
def test_the_watchdog_restarts_a_stopped_service(box: Box) -> None:
    """kill -STOP freezes every thread: the pings stop and systemd restarts it (WatchdogSec)."""
    agent = box.agent
    watchdog_s = int(agent.run("systemctl show -p WatchdogUSec --value cunxiang").out.strip()[:-1])
    pid = unit_state(agent)["MainPID"]
    stopped_at = float(agent.run(f"kill -STOP {pid} && date +%s.%N").check("stop").out)
    wait_active(agent, watchdog_s + 20 + READY_S, other_than=pid)
    lines = agent.run(
        "journalctl -u cunxiang.service -o short-unix --no-pager --grep 'Watchdog timeout'"
    ).out
    times = [float(line.split()[0]) for line in lines.splitlines() if "Watchdog timeout" in line]
    assert times, lines
    fired_after = times[-1] - stopped_at
    box.timings["watchdog_fired_after_stop_s"] = fired_after
    # The service pings every WatchdogSec/2, so its last ping came at most that long before the
    # stop and systemd fires WatchdogSec after it: between WatchdogSec/2 and WatchdogSec after
    # the stop (earlier would be some other restart). 5 s of slack: the guest's systemd runs on
    # an emulated CPU that a busy host can deschedule for seconds.
    assert watchdog_s / 2 - 1 <= fired_after <= watchdog_s + 5, fired_after


@pytest.mark.timeout(3600)
def test_power_cuts_lose_no_committed_record(box: Box) -> None:
    run = power_cuts(box.vm, box.ledger, box.centre, cuts=5, seed=18)
    summary = run.summary()
    print(f"\npower cuts: {summary}")
    box.timings["powercut_median_ready_s"] = summary["median_ready_s"]
    assert summary["integrity_failures"] == 0, run.as_json()
    assert summary["committed_records_lost"] == 0, run.as_json()
    assert summary["seq_conflicts"] == 0, run.as_json()
    assert summary["interrupted_alerts_played_again"] == summary["cuts_during_playback"], (
        run.as_json()
    )
    assert run.committed_seq > 0 and all(c.commits_before > 0 for c in run.cuts), run.as_json()
