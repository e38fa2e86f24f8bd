"""The Debian package: lintian, and what dpkg does with it on a Debian root (install, remove, purge).

The package is built by scripts/build-deb (once per change of a source) and installed with
dpkg in a chroot of the cached bookworm root (scripts/vm-image): the same root the box tests
boot. The chroot has no running systemd, like a box being prepared; the unit is enabled there
and starts at the next boot (tests/box/test_box.py boots it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.box.vm import build_deb, chroot, copy_root

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def test_lintian_finds_no_error_in_the_package() -> None:
    deb = build_deb()
    assert shutil.which("lintian"), "apt package 'lintian' is needed (scripts/setup installs it)"
    done = subprocess.run(
        ["lintian", "--fail-on", "error", str(deb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if line.startswith("E:")]
    assert done.returncode == 0 and not errors, done.stdout


def test_install_keeps_an_edited_config_and_only_purge_removes_data(tmp_path: Path) -> None:
    deb = build_deb()
    root = copy_root(tmp_path)
    try:
        shutil.copy(deb, root / "tmp" / deb.name)
        installed = chroot(root, "dpkg", "-i", f"/tmp/{deb.name}")
        assert installed.returncode == 0, installed.stdout

        # The venv works where it was installed, and the command wrapper finds it.
        check = chroot(root, "cunxiang", "--help")
        assert check.returncode == 0 and "check-config" in check.stdout, check.stdout
        groups = chroot(root, "id", "-nG", "cunxiang").stdout.split()
        assert {"cunxiang", "gpio", "audio", "dialout"} <= set(groups)
        wants = root / "etc/systemd/system/multi-user.target.wants/cunxiang.service"
        assert wants.is_symlink(), "the unit is not enabled"
        owner = chroot(
            root, "stat", "-c", "%U:%G %a", "/var/lib/cunxiang", "/etc/cunxiang/gateway.toml"
        )
        assert owner.stdout.split("\n")[:2] == ["cunxiang:cunxiang 750", "root:cunxiang 640"]
        conffiles = chroot(root, "dpkg-query", "-W", "-f=${Conffiles}", "cunxiang").stdout
        assert "/etc/cunxiang/gateway.toml" in conffiles

        # A technician's edit survives a reinstall; so does the database.
        config = root / "etc/cunxiang/gateway.toml"
        config.write_text(config.read_text() + "\n# edited by the technician\n")
        (root / "var/lib/cunxiang/gateway.db").write_bytes(b"records")
        again = chroot(root, "dpkg", "-i", f"/tmp/{deb.name}")
        assert again.returncode == 0, again.stdout
        assert config.read_text().endswith("# edited by the technician\n")

        removed = chroot(root, "dpkg", "-r", "cunxiang")
        assert removed.returncode == 0, removed.stdout
        assert not (root / "opt/cunxiang").exists(), "remove left files in /opt/cunxiang"
        assert config.read_text().endswith("# edited by the technician\n")
        assert (root / "var/lib/cunxiang/gateway.db").read_bytes() == b"records"

        purged = chroot(root, "dpkg", "-P", "cunxiang")
        assert purged.returncode == 0, purged.stdout
        assert not (root / "etc/cunxiang").exists()
        assert not (root / "var/lib/cunxiang").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_station_imports_its_own_packages_beside_others_of_the_same_name(
    tmp_path: Path,
) -> None:
    """The wheel installs three top-level packages with common names: gateway, drivers, audio
    (docs/decisions.md, "Package names"). They live only in the station's own venv under
    /opt/cunxiang, never in the system's dist-packages, and the venv finds its own first even
    when another Debian package put modules of the same names there (the venv sees the
    system's site-packages for python3-pyaudio)."""
    deb = build_deb()
    root = copy_root(tmp_path)
    try:
        system = root / "usr/lib/python3/dist-packages"
        for name in ("gateway", "drivers", "audio"):
            (system / name).mkdir(parents=True)
            (system / name / "__init__.py").write_text(
                f"raise ImportError('the system-wide {name}, not the station')\n"
            )
        shutil.copy(deb, root / "tmp" / deb.name)
        installed = chroot(root, "dpkg", "-i", f"/tmp/{deb.name}")
        assert installed.returncode == 0, installed.stdout

        where = chroot(
            root,
            "/opt/cunxiang/venv/bin/python",
            "-c",
            "import gateway, drivers, audio; "
            "print(gateway.__file__, drivers.__file__, audio.__file__)",
        )
        assert where.returncode == 0, where.stdout
        paths = where.stdout.split()
        assert len(paths) == 3 and all(p.startswith("/opt/cunxiang/venv/lib/") for p in paths), (
            where.stdout
        )
        check = chroot(root, "cunxiang", "check-config", "-c", "/etc/cunxiang/gateway.toml")
        assert "the system-wide" not in check.stdout, check.stdout

        listed = chroot(root, "dpkg", "-L", "cunxiang").stdout.splitlines()
        outside = [f for f in listed if "-packages" in f and not f.startswith("/opt/cunxiang/")]
        assert not outside, outside
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_lock_pins_every_runtime_dependency() -> None:
    """A dependency added to pyproject.toml must be pinned in packaging/deb/requirements.lock,
    or the package installs without it (PyAudio comes from Debian's python3-pyaudio)."""
    import re
    import tomllib

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    lock = (root / "packaging" / "deb" / "requirements.lock").read_text()

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pinned = {norm(line.split("==")[0]) for line in lock.splitlines() if "==" in line}
    needed = set()
    for spec in project["dependencies"]:
        if "python_version >= '3.13'" in spec:  # not for Debian 12's Python 3.11
            continue
        needed.add(norm(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]))
    assert needed - {"pyaudio"} <= pinned, needed - pinned
