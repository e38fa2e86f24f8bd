"""Smoke test of the package on an emulated box of either architecture (issue 18, part 4).

Why this script exists: the Pi is arm64, and CI's box test (tests/box/) boots amd64 only,
because an arm64 guest under qemu's TCG on an amd64 machine is several times slower again.
This builds the package for `--arch` (scripts/build-deb --arch arm64 fetches the aarch64
wheels), installs it into a Debian 12 image of that architecture (scripts/vm-image --arch
arm64: mmdebstrap with qemu-user-static), boots it under qemu-system-aarch64 (`-machine virt`,
Cortex-A72) and checks what a technician would after installing a box:

1. the service reaches READY under systemd (`systemctl show`: active/running);
2. one reading arrives at the centre's broker (a Mosquitto on the host's 127.0.0.1);
3. one signed alert is played (to the guest's snd-dummy or, on arm64, snd-aloop card: a paced null sink): the centre
   gets its "played" receipt.

    python benchmarks/box_smoke.py --arch arm64     # 20 to 60 minutes on a busy machine
    python benchmarks/box_smoke.py --arch amd64

Prints each step with its time and the guest's `uname -m`; docs/box.md keeps the last result.
Exit status 1 if a step failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.box.station import box_config, wait_active
from harness.box.vm import PROBE_LINKS, BoxVM, build_deb, prepare_disk, probe_files
from harness.faults.common import TOWN_TOPIC, inline_alert
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.station import Centre


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="arm64", choices=["amd64", "arm64"])
    parser.add_argument("--timeout", type=float, default=2400.0, help="per step, seconds")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def step(text: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {text}", flush=True)

    step(f"load average {os.getloadavg()[0]:.1f}; building the {args.arch} package and image")
    folder = Path(tempfile.mkdtemp(prefix=f"cunxiang-smoke-{args.arch}-"))
    centre = Centre()
    deb = build_deb(args.arch)
    files = {**probe_files(), "/etc/cunxiang/gateway.toml": (box_config(centre), 0o640)}
    disk = prepare_disk(deb, folder, files, links=PROBE_LINKS, arch=args.arch)
    step(f"disk ready: {deb.name} installed")
    ok = False
    with Mosquitto() as broker:
        ledger = Ledger(port=broker.port)
        vm = BoxVM(disk, folder, broker.port, arch=args.arch)
        try:
            up = vm.start(boot_timeout=args.timeout)
            assert vm.agent is not None
            machine = vm.agent.run("uname -m; . /etc/os-release; echo $PRETTY_NAME").out.split("\n")
            step(f"booted ({up:.0f} s to the guest agent): {machine[0]}, {machine[1]}")
            state = wait_active(vm.agent, args.timeout)
            step(f"1. READY: cunxiang.service {state['ActiveState']}/{state['SubState']}")
            ledger.wait(lambda: ledger.readings_of("sim-0"), args.timeout, "a reading")
            step(f"2. a reading at the broker: {ledger.readings_of('sim-0')[0]}")
            alert_id, _pcm, raw = inline_alert(centre, 440, 1.0, level="orange")
            ledger.publish(TOWN_TOPIC, raw)
            ledger.wait(
                lambda: set(ledger.statuses(alert_id)) - {"received", "queued", "playing"},
                args.timeout,
                "the alert's last receipt",
            )
            receipts = ledger.receipts_for(alert_id)
            assert "played" in ledger.statuses(alert_id), f"not played: {receipts}"
            step(f"3. alert played: receipts {ledger.statuses(alert_id)}")
            ok = True
        except Exception as exc:
            step(f"FAILED: {exc}")
            print(f"console tail:\n{vm.console_log.read_text(errors='replace')[-2000:]}")
            if vm.agent is not None:
                journal = vm.agent.run("journalctl -u cunxiang --no-pager -n 40").out
                print(f"the station's journal:\n{journal}")
        finally:
            vm.close()
            ledger.close()
    step("passed" if ok else "failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
