"""The shipped unit file: systemd accepts it, and it says what the service relies on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.notify import SystemdNotifier
from gateway.status.server import candidate_paths, socket_path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "cunxiang.service"
EXEC_BINARY = "/opt/cunxiang/venv/bin/cunxiang"


def _settings(text: str) -> dict[str, list[str]]:
    """``Key -> [values]`` over all sections (systemd allows repeated keys)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def _verify(unit_text: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run ``systemd-analyze verify`` on a copy of the unit in ``folder``.

    The ExecStart binary lives in the venv that install.sh creates on the Pi and
    does not exist here; verify would report "Command ... is not executable". So
    the temporary copy points ExecStart at an executable that exists (this
    Python), keeping the arguments; every other line is checked as shipped.
    """
    assert shutil.which("systemd-analyze"), "apt package 'systemd' is needed"
    copy = folder / "cunxiang.service"
    copy.write_text(unit_text.replace(f"ExecStart={EXEC_BINARY} ", f"ExecStart={sys.executable} "))
    assert sys.executable in copy.read_text()
    return subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    done = _verify(UNIT.read_text(), tmp_path)
    assert done.returncode == 0, done.stderr
    # Unknown keys only produce a warning: any output at all is a finding.
    assert done.stderr.strip() == "", done.stderr


def test_verify_would_catch_a_mistyped_directive(tmp_path: Path) -> None:
    """The check above can fail: a typo in a sandboxing key is reported."""
    text = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    done = _verify(text, tmp_path)
    assert "ProtectSytem" in done.stderr


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "30"),
        ("Restart", "always"),
        ("RestartSec", "2"),
        ("StartLimitIntervalSec", "0"),
        ("TimeoutStopSec", "10"),
        ("ExecStart", f"{EXEC_BINARY} run -c /etc/cunxiang/gateway.toml"),
        ("User", "cunxiang"),
        ("SupplementaryGroups", "gpio audio dialout"),
        ("StateDirectory", "cunxiang"),
        ("ConfigurationDirectory", "cunxiang"),
        ("CacheDirectory", "cunxiang"),
        ("RuntimeDirectory", "cunxiang"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("PrivateDevices", "no"),
        ("RestartPreventExitStatus", "78"),
        ("WantedBy", "multi-user.target"),
    ],
)
def test_unit_setting(key: str, value: str) -> None:
    assert _settings(UNIT.read_text()).get(key) == [value]


def test_unit_bounds_memory_and_keeps_devices_reachable() -> None:
    settings = _settings(UNIT.read_text())
    assert "MemoryMax" in settings
    # No device allow-list: it would close /dev/tty*, /dev/gpiochip*, /dev/snd.
    assert "DeviceAllow" not in settings
    assert settings.get("DevicePolicy", ["auto"]) == ["auto"]
    assert "ProtectClock" not in settings


def test_the_service_pings_at_half_the_units_watchdog_sec() -> None:
    watchdog_sec = int(_settings(UNIT.read_text())["WatchdogSec"][0])
    # What systemd puts into the environment for that setting:
    env = {"WATCHDOG_USEC": str(watchdog_sec * 1_000_000)}
    assert SystemdNotifier(env).watchdog_interval_s() == watchdog_sec / 2


def test_status_looks_for_the_socket_where_the_unit_puts_it() -> None:
    """Under the unit the service listens in $RUNTIME_DIRECTORY; a technician's shell has no
    such variable, so `cunxiang status` must look in the unit's runtime directory itself."""
    runtime = Path("/run") / _settings(UNIT.read_text())["RuntimeDirectory"][0]
    database = Path("/var/lib/cunxiang/gateway.db")
    served = socket_path(database, {"RUNTIME_DIRECTORY": str(runtime)})
    assert served.parent == runtime
    assert served in candidate_paths(database, {})


def test_a_config_error_exits_with_the_status_the_unit_does_not_restart_on(tmp_path: Path) -> None:
    """`cunxiang run` with a broken config exits 78, which RestartPreventExitStatus names: the
    unit stays failed (with the problems on stderr, i.e. in the journal) instead of looping."""
    bad = tmp_path / "gateway.toml"
    bad.write_text('[station]\nid = "x"\narea = "371581001201"\nbogus_key = 1\n')
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "-c", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    prevent = _settings(UNIT.read_text())["RestartPreventExitStatus"]
    assert done.returncode == 78 and prevent == [str(done.returncode)]
    assert "bogus_key" in done.stderr
