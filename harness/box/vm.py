"""A real box for tests: the .deb installed into a Debian image, booted under qemu with systemd.

Why this module exists: everything else in the suite runs the station as a process on the test
machine; this runs it as a county would: installed from `dist/cunxiang_<version>_<arch>.deb`
(scripts/build-deb) into a Debian 12 root (scripts/vm-image, cached outside the checkout),
started by real systemd, its database on a raw disk image opened with `cache=none`.
`BoxVM.power_cut()` is SIGKILL of qemu: for the guest the power is gone, and whatever its kernel
had not yet written to the disk is lost, as on a real box (docs/box.md).

The guest's only network is qemu's user-mode NAT with `restrict=on`: it reaches nothing but
one forward, 10.0.2.100:1883 inside the guest, which qemu hands to `socat` connecting to the
test's Mosquitto on 127.0.0.1. The host runs commands in the guest through qemu-guest-agent
(harness/box/agent.py) and reads the station's commit markers (box probe, below) from a
virtio serial port that qemu writes to a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.box.agent import Agent

ROOT = Path(__file__).resolve().parents[2]
#: The broker's address as the station in the guest sees it (a qemu guestfwd).
GUEST_BROKER = "10.0.2.100"
QEMU = {"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}

#: Test-only instrumentation put into the guest (never into the package): it wraps the store's
#: transaction so that "B" goes out before BEGIN and "E <last seq>" after COMMIT returned, on a
#: virtio port the host reads. The host then knows which seqs the station had committed when the
#: power went, and whether the cut fell inside a transaction.
PROBE_SITECUSTOMIZE = '''\
"""Box test probe: commit markers on a virtio serial port (see harness/box/vm.py)."""
import os

try:
    _fd = os.open("/dev/virtio-ports/cx.probe", os.O_WRONLY | os.O_NOCTTY)
except OSError:
    _fd = -1

if _fd >= 0:
    import gateway.store.writer as _store

    _write = _store.Writer._write

    def _probed_write(self, *args, **kwargs):
        os.write(_fd, b"B\\n")
        seq = _write(self, *args, **kwargs)
        os.write(_fd, b"E %d\\n" % self._last_seq)
        return seq

    _store.Writer._write = _probed_write
    os.write(_fd, b"S %d\\n" % os.getpid())
'''

PROBE_UDEV = 'SUBSYSTEM=="virtio-ports", ATTR{name}=="cx.probe", GROUP="dialout", MODE="0660"\n'
PROBE_DROPIN = """\
# Box test only (harness/box/vm.py): load the commit probe, and give the start more time:
# under qemu's TCG on a busy 2-core machine the CPU is emulated 10 to 50 times slower than a
# Pi's, and the station's start (imports, store, first commit) can outlast TimeoutStartSec=60.
[Service]
Environment=PYTHONPATH=/usr/local/lib/cunxiang-box
TimeoutStartSec=600
"""

#: Runs at every boot before the station: checks a copy of the database as the power cut left
#: it (the station's own start would already have moved on) and keeps the answer in /run.
BOXCHECK_SCRIPT = """\
#!/usr/bin/python3
import json, os, shutil, sqlite3
src, out = "/var/lib/cunxiang/gateway.db", "/run/cx-boxcheck"
os.makedirs(out, exist_ok=True)
result = {"exists": os.path.exists(src)}
if result["exists"]:
    for suffix in ("", "-wal"):
        if os.path.exists(src + suffix):
            shutil.copyfile(src + suffix, out + "/copy.db" + suffix)
            result["size" + suffix] = os.path.getsize(src + suffix)
    db = sqlite3.connect(out + "/copy.db")
    result["integrity"] = db.execute("PRAGMA integrity_check").fetchone()[0]
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    result["max_seq"] = int(row[0]) if row else 0
    result["rows"] = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    db.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(out + "/copy.db" + suffix):
            os.remove(out + "/copy.db" + suffix)
with open(out + "/result.json", "w") as f:
    json.dump(result, f)
"""
BOXCHECK_UNIT = """\
[Unit]
Description=Box test: check the station's database before the station starts
Before=cunxiang.service
DefaultDependencies=no
After=local-fs.target
ConditionPathExists=/var/lib/cunxiang

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/cx-boxcheck

[Install]
WantedBy=multi-user.target
"""


def newest_mtime(*paths: Path) -> float:
    newest = 0.0
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            if "__pycache__" not in file.parts:
                newest = max(newest, file.stat().st_mtime)
    return newest


def build_deb(arch: str = "amd64") -> Path:
    """dist/cunxiang_<version>_<arch>.deb, rebuilt by scripts/build-deb when a source changed."""
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    deb = ROOT / "dist" / f"cunxiang_{version}_{arch}.deb"
    sources = [ROOT / p for p in ("gateway", "drivers", "audio", "packaging", "systemd", "config")]
    sources += [ROOT / "pyproject.toml", ROOT / "scripts" / "build-deb"]
    sources += [ROOT / "docs" / "operations.md", ROOT / "docs" / "technician-guide.zh.md"]
    if not deb.exists() or deb.stat().st_mtime < newest_mtime(*sources):
        subprocess.run([str(ROOT / "scripts" / "build-deb"), "--arch", arch], check=True)
    return deb


def vm_image(arch: str = "amd64") -> Path:
    """The cached Debian root, kernel and initrd (scripts/vm-image builds them the first time)."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "vm-image"), "--arch", arch],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(done.stdout.strip().splitlines()[-1])


def copy_root(folder: Path, arch: str = "amd64") -> Path:
    """A private copy of the cached Debian root in `folder` (to install packages into)."""
    root = folder / "root"
    if root.exists():
        shutil.rmtree(root)
    subprocess.run(
        ["cp", "-a", "--reflink=auto", str(vm_image(arch) / "root"), str(root)], check=True
    )
    return root


def chroot(root: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """Run a command in the root (dpkg, cat ...); output and errors together in `.stdout`."""
    return subprocess.run(
        ["chroot", str(root), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "DEBIAN_FRONTEND": "noninteractive",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        },
    )


def prepare_disk(
    deb: Path,
    folder: Path,
    files: dict[str, tuple[str | bytes, int]],
    *,
    links: dict[str, str] | None = None,
    arch: str = "amd64",
    size: str = "3G",
) -> Path:
    """A raw ext4 image of the cached root with `deb` installed by dpkg and `files` added.

    `files` maps guest paths to (content, mode); they are written after the package, so a test
    config replaces the shipped /etc/cunxiang/gateway.toml as a technician's edit would.
    """
    root = copy_root(folder, arch)
    try:
        shutil.copy(deb, root / "tmp" / deb.name)
        done = chroot(root, "dpkg", "-i", f"/tmp/{deb.name}")
        (folder / "dpkg.log").write_text(done.stdout)
        if done.returncode != 0:
            raise RuntimeError(f"dpkg -i {deb.name} failed in the image:\n{done.stdout}")
        (root / "tmp" / deb.name).unlink()
        for path, (content, mode) in files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                content = content.encode()
            target.write_bytes(content)
            target.chmod(mode)
        for path, link_to in (links or {}).items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            target.symlink_to(link_to)
        disk = folder / "disk.img"
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", "cunxiang", "-d", str(root), str(disk), size],
            check=True,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return disk


def probe_files() -> dict[str, tuple[str | bytes, int]]:
    """The test-only files that make the guest report commits and check its database at boot."""
    return {
        "/usr/local/lib/cunxiang-box/sitecustomize.py": (PROBE_SITECUSTOMIZE, 0o644),
        "/etc/udev/rules.d/70-cx-probe.rules": (PROBE_UDEV, 0o644),
        "/etc/systemd/system/cunxiang.service.d/box-probe.conf": (PROBE_DROPIN, 0o644),
        "/usr/local/sbin/cx-boxcheck": (BOXCHECK_SCRIPT, 0o755),
        "/etc/systemd/system/cx-boxcheck.service": (BOXCHECK_UNIT, 0o644),
    }


#: Symlinks made in the image after `files` (a `systemctl enable` done by hand).
PROBE_LINKS = {
    "/etc/systemd/system/multi-user.target.wants/cx-boxcheck.service": (
        "/etc/systemd/system/cx-boxcheck.service"
    )
}


@dataclass
class BoxVM:
    """One qemu process booting `disk`; start it again after a power cut on the same disk."""

    disk: Path
    folder: Path
    broker_port: int
    arch: str = "amd64"
    memory_mb: int = 768
    #: Two vCPUs: qemu's multi-threaded TCG runs them on two host threads, and the station has
    #: several threads (sensors, store, uplink, audio) besides the guest's own systemd.
    cpus: int = 2
    proc: subprocess.Popen[bytes] | None = None
    boots: int = 0
    _sockdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cxbox-")))
    agent: Agent | None = None

    @property
    def console_log(self) -> Path:
        return self.folder / f"console-{self.boots}.log"

    @property
    def probe_log(self) -> Path:
        return self.folder / f"probe-{self.boots}.log"

    def command(self) -> list[str]:
        image = vm_image(self.arch)
        forward = f"guestfwd=tcp:{GUEST_BROKER}:1883-cmd:socat - TCP:127.0.0.1:{self.broker_port}"
        qga = self._sockdir / "qga.sock"
        if self.arch == "amd64":
            machine = ["-accel", "tcg", "-machine", "pc"]
            console = "ttyS0"
        else:
            machine = ["-accel", "tcg", "-machine", "virt", "-cpu", "cortex-a72"]
            console = "ttyAMA0"
        return [
            QEMU[self.arch],
            *machine,
            "-m",
            str(self.memory_mb),
            "-smp",
            str(self.cpus),
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-kernel",
            str(image / "vmlinuz"),
            "-initrd",
            str(image / "initrd.img"),
            "-append",
            f"root=/dev/vda rw console={console} panic=-1",
            "-drive",
            f"file={self.disk},format=raw,if=virtio,cache=none",
            "-nic",
            f"user,model=virtio-net-pci,restrict=on,{forward}",
            "-device",
            "virtio-serial",
            "-chardev",
            f"socket,id=qga,path={qga},server=on,wait=off",
            "-device",
            "virtserialport,chardev=qga,name=org.qemu.guest_agent.0",
            "-chardev",
            f"file,id=probe,path={self.probe_log}",
            "-device",
            "virtserialport,chardev=probe,name=cx.probe",
            "-serial",
            f"file:{self.console_log}",
        ]

    def start(self, boot_timeout: float = 900.0) -> float:
        """Boot; return the seconds until the guest agent answered."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.boots += 1
        log = (self.folder / f"qemu-{self.boots}.log").open("wb")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.agent = Agent(self._sockdir / "qga.sock")
        deadline = time.monotonic() + 20
        while not (self._sockdir / "qga.sock").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "qemu did not start: "
                    + (self.folder / f"qemu-{self.boots}.log").read_text(errors="replace")
                )
            time.sleep(0.05)
        try:
            return self.agent.wait_up(boot_timeout)
        except Exception:
            tail = self.console_log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the guest did not come up; console tail:\n{tail}") from None

    def power_cut(self) -> float:
        """SIGKILL qemu (a power cut for the guest); return the monotonic time of the cut."""
        assert self.proc is not None
        at = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        if self.agent is not None:
            self.agent.close()
        return at

    def probe_lines(self) -> list[str]:
        try:
            text = self.probe_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line.strip("\r") for line in text.split("\n") if line.strip("\r")]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        if self.agent is not None:
            self.agent.close()
        shutil.rmtree(self._sockdir, ignore_errors=True)
