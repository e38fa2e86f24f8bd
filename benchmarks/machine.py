"""The machine a run was measured on, stated with every result.

Why this module exists: the targets are figures "on this machine"; a table is worth little
without the cores, CPU model, memory, kernel, the versions of Python, SQLite, Mosquitto and
paho, and the filesystem the database was on (write_bytes means nothing on a tmpfs).
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from pathlib import Path


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware"):
            return value.strip()
    return platform.processor() or "unknown"


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def _mosquitto() -> str:
    try:
        out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"not found ({exc})"
    first = (out.stdout or out.stderr).splitlines()[:1]
    return first[0].replace("mosquitto version", "").strip() if first else "unknown"


def _paho() -> str:
    from importlib.metadata import version

    return version("paho-mqtt")


def filesystem(path: Path) -> str:
    """The filesystem type and device of the mount that holds `path`."""
    target = path.resolve()
    best = ("", "unknown", "unknown")
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, kind, *_ = line.split()
        if (target == Path(mount) or Path(mount) in target.parents) and len(mount) > len(best[0]):
            best = (mount, kind, device)
    return f"{best[1]} on {best[2]} (mounted at {best[0]})"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def describe(workdir: Path) -> dict[str, object]:
    """What the results were measured on."""
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_mb": _memory_mb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "mosquitto": _mosquitto(),
        "paho_mqtt": _paho(),
        "database_filesystem": filesystem(workdir),
        "load_average_at_start": load_average(),
    }
