"""install.sh and uninstall.sh against a temporary root folder.

The scripts run for real (bash, cp, systemctl --root for enabling); only the
slow venv step (pip) is skipped with --no-venv, and user creation and chown
are skipped by the scripts themselves under --root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
INSTALL = PROJECT / "systemd" / "install.sh"
UNINSTALL = PROJECT / "systemd" / "uninstall.sh"
UNIT_PATH = "etc/systemd/system/cunxiang.service"
WANTS_PATH = "etc/systemd/system/multi-user.target.wants/cunxiang.service"
Tree = dict[str, tuple[str, ...]]


def run(script: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def install(root: Path, *extra: str) -> str:
    return run(INSTALL, "--root", str(root), "--no-venv", *extra)


def snapshot(root: Path) -> Tree:
    """Every path under root with its type, mode, content hash or link target and mtime."""
    tree: Tree = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        mode = oct(stat.S_IMODE(st.st_mode))
        if path.is_symlink():
            tree[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            tree[rel] = ("dir", mode, str(st.st_mtime_ns))
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            tree[rel] = ("file", mode, digest, str(st.st_mtime_ns))
    return tree


def without_times(tree: Tree) -> Tree:
    return {k: v if v[0] == "link" else v[:-1] for k, v in tree.items()}


def test_install_builds_the_tree(tmp_path: Path) -> None:
    out = install(tmp_path)
    assert "changed: created /etc/cunxiang/gateway.toml" in out
    unit = tmp_path / UNIT_PATH
    assert unit.read_bytes() == (PROJECT / "systemd" / "cunxiang.service").read_bytes()
    assert oct(stat.S_IMODE(unit.stat().st_mode)) == "0o644"
    # Enabled the way systemctl does it: the wants symlink.
    assert os.readlink(tmp_path / WANTS_PATH) == "/etc/systemd/system/cunxiang.service"

    example = (PROJECT / "config" / "example.toml").read_bytes()
    config = tmp_path / "etc/cunxiang/gateway.toml"
    assert config.read_bytes() == example
    assert (tmp_path / "etc/cunxiang/gateway.toml.example").read_bytes() == example
    assert oct(stat.S_IMODE(config.stat().st_mode)) == "0o640"
    for folder in ["etc/cunxiang", "etc/cunxiang/clips", "var/lib/cunxiang", "var/cache/cunxiang"]:
        assert oct(stat.S_IMODE((tmp_path / folder).stat().st_mode)) == "0o750", folder

    wrapper = tmp_path / "usr/local/bin/cunxiang"
    assert os.access(wrapper, os.X_OK)
    assert "exec runuser -u cunxiang -- /opt/cunxiang/venv/bin/cunxiang" in wrapper.read_text()
    assert not (tmp_path / "opt/cunxiang/venv").exists()  # --no-venv


def test_a_second_install_changes_nothing(tmp_path: Path) -> None:
    install(tmp_path)
    before = snapshot(tmp_path)
    out = install(tmp_path)
    assert snapshot(tmp_path) == before
    assert "nothing to change" in out
    assert "changed:" not in out


def test_destdir_works_like_root(tmp_path: Path) -> None:
    run(INSTALL, "--no-venv", env={"DESTDIR": str(tmp_path / "a")})
    install(tmp_path / "b")
    a, b = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert without_times(a) == without_times(b)


def _copy_source(dest: Path) -> Path:
    """A copy of what install.sh reads, so a test can change it like an upgrade would."""
    for part in ["pyproject.toml", "systemd", "config/example.toml"]:
        src, dst = PROJECT / part, dest / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    return dest


def test_an_upgrade_keeps_the_technicians_config(tmp_path: Path) -> None:
    source = _copy_source(tmp_path / "src")
    root = tmp_path / "root"
    install(root, "--source", str(source))
    config = root / "etc/cunxiang/gateway.toml"
    edited = config.read_text().replace('id = "lq-371581001201-01"', 'id = "lq-371581001201-07"')
    config.write_text(edited)

    (source / "config/example.toml").write_text("# a newer example\n")
    unit = source / "systemd/cunxiang.service"
    unit.write_text(unit.read_text().replace("MemoryMax=256M", "MemoryMax=300M"))
    out = install(root, "--source", str(source))

    assert config.read_text() == edited
    assert (root / "etc/cunxiang/gateway.toml.example").read_text() == "# a newer example\n"
    assert "MemoryMax=300M" in (root / UNIT_PATH).read_text()
    assert "changed: installed /etc/systemd/system/cunxiang.service" in out
    assert "gateway.toml from" not in out


def test_no_systemctl_leaves_the_unit_disabled(tmp_path: Path) -> None:
    out = install(tmp_path, "--no-systemctl")
    assert (tmp_path / UNIT_PATH).is_file()
    assert not (tmp_path / WANTS_PATH).exists()
    assert "systemctl skipped" in out


def test_someone_elses_cunxiang_command_is_left_alone(tmp_path: Path) -> None:
    mine = tmp_path / "usr/local/bin/cunxiang"
    mine.parent.mkdir(parents=True)
    mine.write_text("#!/bin/sh\necho developer build\n")
    out = install(tmp_path)
    assert mine.read_text() == "#!/bin/sh\necho developer build\n"
    assert "is not ours; left alone" in out
    run(UNINSTALL, "--root", str(tmp_path))
    assert mine.exists()


def test_uninstall_keeps_config_and_data_then_purge_removes_them(tmp_path: Path) -> None:
    install(tmp_path)
    (tmp_path / "opt/cunxiang/venv/bin").mkdir(parents=True)  # stands in for the venv
    database = tmp_path / "var/lib/cunxiang/gateway.db"
    database.write_bytes(b"SQLite format 3\x00 unsent records")

    out = run(UNINSTALL, "--root", str(tmp_path))
    assert "kept /etc/cunxiang" in out
    for gone in [UNIT_PATH, WANTS_PATH, "opt/cunxiang", "usr/local/bin/cunxiang"]:
        assert not (tmp_path / gone).exists(), gone
    assert (tmp_path / "etc/cunxiang/gateway.toml").is_file()
    assert database.read_bytes() == b"SQLite format 3\x00 unsent records"

    before = snapshot(tmp_path)
    assert "nothing to remove" in run(UNINSTALL, "--root", str(tmp_path))
    assert snapshot(tmp_path) == before

    run(UNINSTALL, "--root", str(tmp_path), "--purge")
    for gone in ["etc/cunxiang", "var/lib/cunxiang", "var/cache/cunxiang"]:
        assert not (tmp_path / gone).exists(), gone


def test_reinstall_after_uninstall_finds_the_old_config(tmp_path: Path) -> None:
    install(tmp_path)
    config = tmp_path / "etc/cunxiang/gateway.toml"
    config.write_text("# the technician's\n")
    run(UNINSTALL, "--root", str(tmp_path))
    install(tmp_path)
    assert config.read_text() == "# the technician's\n"
    assert (tmp_path / WANTS_PATH).is_symlink()


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        (INSTALL, ["--frobnicate"], "unknown option '--frobnicate'"),
        (INSTALL, ["--root"], "--root needs a folder"),
        (UNINSTALL, ["--root", "/nonexistent/cunxiang-root"], "no such folder"),
    ],
)
def test_bad_arguments_get_a_clear_error(script: Path, args: list[str], message: str) -> None:
    done = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert message in done.stderr


def test_a_source_without_the_example_config_is_refused(tmp_path: Path) -> None:
    source = _copy_source(tmp_path / "src")
    (source / "config/example.toml").unlink()
    done = subprocess.run(
        ["bash", str(INSTALL), "--root", str(tmp_path / "root"), "--source", str(source)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "missing" in done.stderr and "config/example.toml" in done.stderr
    assert not (tmp_path / "root/etc").exists()


def test_shipped_clips_are_added_but_never_replaced(tmp_path: Path) -> None:
    source = _copy_source(tmp_path / "src")
    clips = source / "config/clips"
    clips.mkdir(parents=True, exist_ok=True)
    (clips / "flood.wav").write_bytes(b"RIFF shipped flood")
    root = tmp_path / "root"
    install(root, "--source", str(source))
    installed = root / "etc/cunxiang/clips/flood.wav"
    assert installed.read_bytes() == b"RIFF shipped flood"
    assert oct(stat.S_IMODE(installed.stat().st_mode)) == "0o640"

    installed.write_bytes(b"RIFF the village's own recording")
    (clips / "flood.wav").write_bytes(b"RIFF newer shipped flood")
    (clips / "fire.wav").write_bytes(b"RIFF shipped fire")
    install(root, "--source", str(source))
    assert installed.read_bytes() == b"RIFF the village's own recording"
    assert (root / "etc/cunxiang/clips/fire.wav").read_bytes() == b"RIFF shipped fire"


REAL_ROOT_SCRIPT = r"""
set -euo pipefail
# Private copies of the system folders install.sh writes: overlays in this mount
# namespace only, so useradd, chown and systemctl act for real without touching the host.
for d in etc opt usr/local var; do
    mkdir -p "$SCRATCH/up/$d" "$SCRATCH/work/$d"
    mount -t overlay overlay \
        -o "lowerdir=/$d,upperdir=$SCRATCH/up/$d,workdir=$SCRATCH/work/$d" "/$d"
done
bash "$INSTALL" --no-apt --no-venv >"$SCRATCH/first.log"
bash "$INSTALL" --no-apt --no-venv >"$SCRATCH/second.log"
id -nG cunxiang >"$SCRATCH/groups"
stat -c '%n %U:%G %a' /etc/cunxiang /etc/cunxiang/gateway.toml /var/lib/cunxiang \
    /var/cache/cunxiang >"$SCRATCH/owners"
readlink /etc/systemd/system/multi-user.target.wants/cunxiang.service >"$SCRATCH/wants"
# The wrapper, called as root, runs the program as the service user.
mkdir -p /opt/cunxiang/venv/bin
printf '#!/bin/sh\nid -un\n' >/opt/cunxiang/venv/bin/cunxiang
chmod 755 /opt/cunxiang/venv/bin/cunxiang
/usr/local/bin/cunxiang status >"$SCRATCH/wrapper"
bash "$UNINSTALL" --purge >"$SCRATCH/uninstall.log"
if id cunxiang >/dev/null 2>&1; then echo present; else echo absent; fi >"$SCRATCH/user_after"
"""


def _can_overlay(scratch: Path) -> bool:
    """Root, unshare and overlayfs are all there (a probe mount on scratch folders)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    for part in ["lower", "upper", "work", "merged"]:
        (scratch / part).mkdir(parents=True)
    options = f"lowerdir={scratch}/lower,upperdir={scratch}/upper,workdir={scratch}/work"
    probe = subprocess.run(
        ["unshare", "-m", "mount", "-t", "overlay", "overlay", "-o", options, f"{scratch}/merged"],
        capture_output=True,
        timeout=10,
    )
    return probe.returncode == 0


def test_install_as_real_root_in_a_private_mount_namespace(tmp_path: Path) -> None:
    """The real-root path (groups, user, chown, systemctl enable, wrapper) on overlays."""
    if not _can_overlay(tmp_path / "probe"):
        pytest.skip("needs root and unshare -m (a private mount namespace) on this machine")
    host_had_user = subprocess.run(["id", "cunxiang"], capture_output=True).returncode == 0
    env = {
        **os.environ,
        "SCRATCH": str(tmp_path),
        "INSTALL": str(INSTALL),
        "UNINSTALL": str(UNINSTALL),
    }
    done = subprocess.run(
        ["unshare", "-m", "bash", "-c", REAL_ROOT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    first = (tmp_path / "first.log").read_text()
    assert "changed: created user cunxiang" in first
    assert "nothing to change" in (tmp_path / "second.log").read_text()
    assert set((tmp_path / "groups").read_text().split()) == {
        "cunxiang",
        "gpio",
        "audio",
        "dialout",
    }
    assert (tmp_path / "owners").read_text().splitlines() == [
        "/etc/cunxiang root:cunxiang 750",
        "/etc/cunxiang/gateway.toml root:cunxiang 640",
        "/var/lib/cunxiang cunxiang:cunxiang 750",
        "/var/cache/cunxiang cunxiang:cunxiang 750",
    ]
    assert (tmp_path / "wants").read_text().strip() == "/etc/systemd/system/cunxiang.service"
    assert (tmp_path / "wrapper").read_text().strip() == "cunxiang"
    assert (tmp_path / "user_after").read_text().strip() == "absent"
    # The host saw none of it.
    assert (
        subprocess.run(["id", "cunxiang"], capture_output=True).returncode == 0
    ) == host_had_user
    assert not Path("/etc/cunxiang").exists() or host_had_user
