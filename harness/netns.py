"""A network link that a test can cut and make lossy: two namespaces joined by a veth pair.

Why this module exists: the station's uplink is a 4G modem in a village; the link drops for
minutes and loses packets. Loopback never does either, so the network-cut scenario puts the
broker in a network namespace of its own and the station in another, joined by one veth pair
(docs/testing.md "Networks"):

    station ns  cx<id>s: veth cx<id>s  10.231.N.1/30  ──────  10.231.N.2/30  veth cx<id>b : broker ns cx<id>b

* `cut()` / `restore()` take the link down and up (`ip link set … down/up` on both ends);
* `lossy(percent)` adds nftables rules in both namespaces that drop that share of the
  packets arriving over the veth (``numgen random mod 100 < P drop``); `clear_loss()`
  removes them. ``tc netem`` has no kernel module on these machines.

Only addresses created here, inside these namespaces, are used; nothing routes off the machine.
`NetnsLink.available()` says why a machine cannot do this (not root, no `ip`, no `nft`, no
namespaces allowed), so the test can skip with that reason. `close()` deletes both namespaces
(which also deletes the veth pair and the nftables tables in them); call it in `finally`.

`NamespacedMosquitto` is the broker for that setup: a `harness.mosquitto.Mosquitto` whose
process runs in the broker namespace and listens on the veth address for the station, plus on
a unix socket for the centre (a unix socket is a file, so the test process reaches it from the
root namespace without any address of its own there).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

from harness.mosquitto import Mosquitto

NFT_TABLE = "cxloss"
BROKER_PORT = 1883


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=20)


class NetnsLink:
    """Two namespaces and a veth pair between them (see the module docstring)."""

    def __init__(self, tag: str | None = None) -> None:
        tag = tag or f"{os.getpid() % 100000}"
        self.station_ns = f"cx{tag}s"
        self.broker_ns = f"cx{tag}b"
        self.station_dev = f"cx{tag}s"
        self.broker_dev = f"cx{tag}b"
        subnet = (os.getpid() % 64) * 4  # a /30 inside 10.231.<n>.0/24, per process
        third = (os.getpid() // 64) % 250
        self.station_addr = f"10.231.{third}.{subnet + 1}"
        self.broker_addr = f"10.231.{third}.{subnet + 2}"
        self.loss_percent = 0
        self._made: list[str] = []

    @staticmethod
    def available() -> str | None:
        """None if this machine can make namespaces and nftables rules, else the reason it cannot."""
        if os.geteuid() != 0:
            return "network namespaces need root"
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                return f"the {tool!r} command is not installed (apt iproute2 / nftables)"
        probe = f"cxprobe{os.getpid() % 100000}"
        made = _run("ip", "netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"'ip netns add' is not permitted here: {made.stderr.strip()}"
        try:
            nft = _run(
                "ip", "netns", "exec", probe, "nft", "add", "table", "inet", "p", check=False
            )
            if nft.returncode != 0:
                return f"nftables is not usable in a namespace: {nft.stderr.strip()}"
        finally:
            _run("ip", "netns", "del", probe, check=False)
        return None

    def open(self) -> NetnsLink:
        """Create the namespaces, the veth pair and the addresses; bring everything up."""
        try:
            for ns in (self.station_ns, self.broker_ns):
                _run("ip", "netns", "add", ns)
                self._made.append(ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run(
                "ip", "link", "add", self.station_dev, "netns", self.station_ns,
                "type", "veth", "peer", "name", self.broker_dev, "netns", self.broker_ns,
            )  # fmt: skip
            _run(
                "ip",
                "-n",
                self.station_ns,
                "addr",
                "add",
                f"{self.station_addr}/30",
                "dev",
                self.station_dev,
            )
            _run(
                "ip",
                "-n",
                self.broker_ns,
                "addr",
                "add",
                f"{self.broker_addr}/30",
                "dev",
                self.broker_dev,
            )
            self.restore()
        except BaseException:
            self.close()
            raise
        return self

    def _ends(self) -> list[tuple[str, str]]:
        return [(self.station_ns, self.station_dev), (self.broker_ns, self.broker_dev)]

    def cut(self) -> None:
        """Take the link down on both ends (the cable is pulled)."""
        for ns, dev in self._ends():
            _run("ip", "-n", ns, "link", "set", dev, "down")

    def restore(self) -> None:
        """Bring the link up again on both ends."""
        for ns, dev in self._ends():
            _run("ip", "-n", ns, "link", "set", dev, "up")

    def lossy(self, percent: int) -> None:
        """Drop `percent` % of the packets arriving over the veth, in each direction."""
        self.clear_loss()
        for ns, dev in self._ends():
            _run("ip", "netns", "exec", ns, "nft", "add", "table", "inet", NFT_TABLE)
            _run(
                "ip", "netns", "exec", ns, "nft", "add", "chain", "inet", NFT_TABLE, "input",
                "{ type filter hook input priority 0 ; policy accept ; }",
            )  # fmt: skip
            _run(
                "ip", "netns", "exec", ns, "nft", "add", "rule", "inet", NFT_TABLE, "input",
                "iifname", dev, "numgen", "random", "mod", "100", "<", str(percent), "counter", "drop",
            )  # fmt: skip
        self.loss_percent = percent

    def dropped(self) -> int:
        """Packets the loss rules have dropped so far (both directions)."""
        total = 0
        for ns, _dev in self._ends():
            out = _run(
                "ip", "netns", "exec", ns, "nft", "list", "table", "inet", NFT_TABLE, check=False
            )
            for part in out.stdout.split("packets ")[1:]:
                total += int(part.split()[0])
        return total

    def clear_loss(self) -> None:
        """Remove the loss rules."""
        for ns, _dev in self._ends():
            _run(
                "ip", "netns", "exec", ns, "nft", "delete", "table", "inet", NFT_TABLE, check=False
            )
        self.loss_percent = 0

    def close(self) -> None:
        """Delete the namespaces (and with them the veth pair and the rules)."""
        for ns in reversed(self._made):
            _run("ip", "netns", "del", ns, check=False)
        self._made.clear()

    def __enter__(self) -> NetnsLink:
        return self.open()

    def __exit__(self, *_: object) -> None:
        self.close()


class NamespacedMosquitto(Mosquitto):
    """A private Mosquitto inside `link.broker_ns`: TCP on the veth address, a unix socket for tests."""

    def __init__(self, link: NetnsLink) -> None:
        self.link = link
        super().__init__()
        self.host = link.broker_addr
        self.port = BROKER_PORT
        self.unix_path = str(self.dir / "mqtt.sock")

    def listener_lines(self) -> list[str]:
        return [f"listener {BROKER_PORT} {self.link.broker_addr}", f"listener 0 {self.unix_path}"]

    def command(self) -> list[str]:
        # `ip netns exec` execs mosquitto in place, so the Popen pid is the broker's own.
        return ["ip", "netns", "exec", self.link.broker_ns, *super().command()]

    def answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.2)
                probe.connect(self.unix_path)
        except OSError:
            return False
        return True
