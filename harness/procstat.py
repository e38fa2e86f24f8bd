"""What the kernel says about a process: CPU time, bytes written to storage, memory, descriptors.

Why this module exists: every figure that is about cost (bytes per reading, CPU per reading,
RSS, CPU share, CPU per alert) and every leak the fault suite looks for is read from /proc of
the measured process, never estimated. ``write_bytes``
in /proc/<pid>/io is what the process caused to be written to the block device (page-cache
pages it dirtied, counted in whole 4 KiB pages); ``utime + stime`` from /proc/<pid>/stat is its
CPU time over all threads (the nanoseconds of /proc/<pid>/task/*/schedstat the same, finer);
``VmRSS``/``VmHWM`` from /proc/<pid>/status its resident memory now and at its peak; the
entries of /proc/<pid>/fd its open descriptors.

The last figures of a process are taken after it has exited and before it is reaped
(``waitid(WNOWAIT)``), so the final flush and checkpoint of a clean shutdown are counted.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """One look at a process."""

    t: float  # time.monotonic() of the sample
    cpu_s: float  # user + system time, all threads
    write_bytes: int
    rss_kb: int  # VmRSS (0 for a process that has exited)
    hwm_kb: int  # VmHWM, the peak of VmRSS so far (0 once exited)


def _io(pid: int | str) -> dict[str, int]:
    text = Path(f"/proc/{pid}/io").read_text()
    return {key: int(value) for key, value in (line.split(": ") for line in text.splitlines())}


def cpu_s(pid: int | str) -> float:
    """User + system CPU time of `pid`, all its threads (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def run_ns(pid: int) -> int:
    """Nanoseconds on a CPU of `pid`'s live threads (/proc/<pid>/task/*/schedstat)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def rss_kib(pid: int) -> int | None:
    """VmRSS of `pid` in KiB, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def open_fds(pid: int) -> int | None:
    """How many file descriptors `pid` has open, or None if the process is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _memory_kb(pid: int | str) -> tuple[int, int]:
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


def sample(pid: int | str = "self") -> Sample:
    """CPU, write_bytes and memory of `pid` now."""
    rss, hwm = _memory_kb(pid)
    return Sample(time.monotonic(), cpu_s(pid), _io(pid)["write_bytes"], rss, hwm)


def reset_peak(pid: int | str = "self") -> None:
    """Start a new VmHWM peak for `pid` (Linux: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass(frozen=True)
class Exit:
    """A process's totals at exit."""

    returncode: int
    cpu_s: float
    write_bytes: int
    maxrss_kb: int


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> Exit:
    """Wait for `proc` to exit and return its totals (write_bytes read before it is reaped)."""
    deadline = time.monotonic() + timeout
    while True:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {proc.pid} did not exit within {timeout} s")
        time.sleep(0.01)
    written = _io(proc.pid)["write_bytes"]  # a zombie keeps its I/O accounting
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Exit(
        proc.returncode,
        usage.ru_utime + usage.ru_stime,
        written,
        int(usage.ru_maxrss),
    )
