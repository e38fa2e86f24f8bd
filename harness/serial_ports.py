"""Serial ports a test device talks through: a pty that can be unplugged, a socat pty pair.

Why this module exists: the driver tests, the service tests and the fault scenarios all put
real bytes on a real (pseudo-)terminal. A `PtyPort` is a pty pair whose slave end is reached
through a symlink that can be removed and recreated (a USB adapter being unplugged and plugged
back); a `SocatPair` is two named pty ends joined by socat, one for the device (a Modbus
transmitter, a noisy line) and one for the driver.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
import tty
from pathlib import Path


class PtyPort:
    """A pty pair; the driver opens `path`, a symlink to the slave, the test uses the master."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self._slave = -1
        self.plug()

    @property
    def path(self) -> str:
        return str(self.link)

    def plug(self) -> None:
        """A fresh pty behind the link (a new device node, as after replugging a USB adapter)."""
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.symlink(os.ttyname(self._slave), self.link)

    def unplug(self) -> None:
        """The device node disappears and the far end hangs up."""
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master = self._slave = -1

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read(self, timeout: float = 1.0, want: int = 1) -> bytes:
        """Bytes the driver wrote, waiting up to `timeout` for at least `want` of them."""
        deadline = time.monotonic() + timeout
        got = b""
        while len(got) < want:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                break
            got += os.read(self.master, 4096)
        return got

    def close(self) -> None:
        self.unplug()


class SocatPair:
    """Two named pty ends joined by socat: `server` for the device, `client` for the driver."""

    def __init__(self, folder: Path) -> None:
        self.server = folder / "rs485-device"
        self.client = folder / "ttyRS485"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                "socat",
                f"pty,raw,echo=0,link={self.server}",
                f"pty,raw,echo=0,link={self.client}",
            ],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not (self.server.exists() and self.client.exists()):
            if time.monotonic() > deadline:
                raise RuntimeError("socat did not create its pty links")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)
            self._proc = None
        deadline = time.monotonic() + 2
        while (self.server.exists() or self.client.exists()) and time.monotonic() < deadline:
            time.sleep(0.005)
