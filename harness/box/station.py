"""The station as the box tests configure it: config text for the guest, and waiting for systemd.

Why this module exists: a box test (tests/box/) and benchmarks/powercut.py install the package
into a VM image and then replace /etc/cunxiang/gateway.toml with `box_config()`: the broker is
the test's Mosquitto as the guest reaches it (harness/box/vm.py), the keys are the test
centre's, the sensors are simulated (the VM has no serial ports or GPIO) and the loudspeaker is
the guest's snd-dummy card. `unit_state()` reads what systemd says about the service, through
the guest agent.
"""

from __future__ import annotations

import time

from harness.box.agent import Agent, AgentError
from harness.box.vm import GUEST_BROKER
from harness.faults.common import simulated_sensors
from harness.station import AREA, STATION_ID, Centre


def box_config(centre: Centre, *, sensors: int = 3, interval_s: float = 0.05) -> str:
    """/etc/cunxiang/gateway.toml for a box test."""
    return f"""# Box test config (harness/box/station.py)
[station]
id = "{STATION_ID}"
area = "{AREA}"
clock = "synced"

[mqtt]
host = "{GUEST_BROKER}"
port = 1883
keepalive_s = 10
heartbeat_s = 5
reconnect_min_s = 0.2
reconnect_max_s = 2.0
allow_plaintext = true  # the test broker is on the host, behind qemu's user network

[storage]
path = "/var/lib/cunxiang/gateway.db"
commit_interval_s = 0.2

[security]
trusted_keys = {{ "{centre.name}" = "{centre.public_b64}" }}

[audio]
device = "default"
clips_dir = "clips"
tts = "none"
amp_warmup_s = 0
amp_release_s = 0.5
repeat_gap_s = 0.2
{simulated_sensors(sensors, interval_s)}"""


def unit_state(agent: Agent, unit: str = "cunxiang.service") -> dict[str, str]:
    """`systemctl show` of the unit's state properties, as a dict."""
    props = "ActiveState,SubState,MainPID,Result,ExecMainStatus,NRestarts,StatusText"
    # Generous: during a boot under TCG on a busy machine systemd can take a minute to answer.
    done = agent.run(f"systemctl show -p {props} {unit}", timeout=180)
    return dict(line.split("=", 1) for line in done.out.splitlines() if "=" in line)


def wait_active(agent: Agent, timeout: float, *, other_than: str = "") -> dict[str, str]:
    """Wait until the unit is active/running (Type=notify: after READY=1) with a new MainPID."""
    deadline = time.monotonic() + timeout
    state: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            state = unit_state(agent)
        except AgentError as exc:  # systemd still too busy to answer: ask again
            state = {"error": str(exc)}
            continue
        if (
            state.get("ActiveState") == "active"
            and state.get("SubState") == "running"
            and state.get("MainPID", "0") not in ("0", other_than)
        ):
            return state
        time.sleep(0.5)
    raise AssertionError(f"cunxiang.service not active within {timeout} s: {state}")
