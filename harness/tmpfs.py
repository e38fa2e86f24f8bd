"""A small disk that a test can fill up: a size-limited tmpfs mounted on a folder of its own.

Why this module exists: SD cards fill up: logs, a forgotten core dump, a backlog that grew for
weeks. The full-disk scenario puts the station's database on a tmpfs of a few MiB (`mount -t
tmpfs -o size=…`, root only) and fills the rest with a ballast file, so SQLite gets ENOSPC
(SQLITE_FULL) exactly as on a full card; deleting the ballast gives the space back.

`SmallDisk.available()` says why it cannot be done here (not root, mount not permitted), so
the test can skip with that reason. Always `close()` (it unmounts, lazily if something still
holds a file open) — in `finally`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

CHUNK = 64 * 1024


class SmallDisk:
    """A tmpfs of `size_kib` KiB on `mountpoint`, with a ballast file to fill it."""

    def __init__(self, mountpoint: Path, size_kib: int) -> None:
        self.mountpoint = mountpoint
        self.size_kib = size_kib
        self.ballast = mountpoint / "ballast"
        self._mounted = False

    @staticmethod
    def available(probe_dir: Path) -> str | None:
        """None if a tmpfs can be mounted here, else why not."""
        if os.geteuid() != 0:
            return "mounting a tmpfs needs root"
        probe = probe_dir / "tmpfs-probe"
        probe.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return f"mount -t tmpfs is not permitted here: {done.stderr.strip()}"
        subprocess.run(["umount", str(probe)], check=False)
        probe.rmdir()
        return None

    def open(self) -> SmallDisk:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.size_kib}k,mode=0755",
                "tmpfs",
                str(self.mountpoint),
            ],
            check=True,
            capture_output=True,
        )
        self._mounted = True
        return self

    def free_kib(self) -> int:
        stat = os.statvfs(self.mountpoint)
        return stat.f_bavail * stat.f_frsize // 1024

    def fill(self, leave_kib: int = 0) -> int:
        """Grow the ballast until less than `leave_kib` KiB is free (0: until ENOSPC); its size."""
        with self.ballast.open("ab", buffering=0) as out:
            while self.free_kib() > leave_kib:
                want = CHUNK if leave_kib == 0 else min(CHUNK, (self.free_kib() - leave_kib) * 1024)
                try:
                    out.write(b"\0" * max(4096, want))
                except OSError:  # ENOSPC: full
                    break
        return self.ballast.stat().st_size

    def empty(self) -> None:
        """Delete the ballast: the space comes back."""
        with contextlib.suppress(FileNotFoundError):
            self.ballast.unlink()

    def close(self) -> None:
        if not self._mounted:
            return
        done = subprocess.run(["umount", str(self.mountpoint)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, check=False)
        self._mounted = False

    def __enter__(self) -> SmallDisk:
        return self.open()

    def __exit__(self, *_: object) -> None:
        self.close()
