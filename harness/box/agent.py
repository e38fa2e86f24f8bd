"""Run commands inside the box VM through qemu-guest-agent (the guest's own Debian package).

Why this module exists: the box tests (tests/box/) boot a Debian image under qemu; the host
needs to run `systemctl`, `journalctl` and a few checks inside it. qemu-guest-agent does exactly
that over a virtio serial port, with no network, no ssh keys and no login: the host speaks its
JSON protocol on a unix socket (`guest-exec` starts a command, `guest-exec-status` collects its
exit code and output). This module is the host's side of that protocol, nothing more.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class AgentError(RuntimeError):
    """The agent did not answer, or answered with an error."""


@dataclass
class Done:
    """A finished command: exit code and output as text."""

    code: int
    out: str
    err: str

    def check(self, what: str) -> Done:
        if self.code != 0:
            raise AgentError(f"{what}: exit {self.code}\nstdout: {self.out}\nstderr: {self.err}")
        return self


class Agent:
    """A connection to qemu-guest-agent through qemu's unix socket chardev."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._buf = b""
        self._sync_id = int(time.time() * 1000) % 1_000_000_000

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
            self._buf = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(self.path))
            self._sock = sock
            self._buf = b""
        return self._sock

    def _send(self, message: dict[str, Any]) -> None:
        self._connect().sendall(json.dumps(message).encode() + b"\n")

    def _receive(self, timeout: float) -> dict[str, Any]:
        sock = self._connect()
        deadline = time.monotonic() + timeout
        decoder = json.JSONDecoder()
        while True:
            text = self._buf.lstrip(b"\xff \r\n").decode("utf-8", "replace")
            if text:
                try:
                    obj, end = decoder.raw_decode(text)
                except ValueError:
                    pass
                else:
                    self._buf = text[end:].encode()
                    if isinstance(obj, dict):
                        return obj
                    continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentError("no answer from the guest agent")
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError as exc:
                raise AgentError("no answer from the guest agent") from exc
            if not chunk:
                self.close()
                raise AgentError("the guest agent's socket closed")
            self._buf += chunk

    def sync(self, timeout: float = 3.0) -> None:
        """Resynchronise the stream (and prove the agent runs): guest-sync with a fresh id."""
        self._sync_id += 1
        self._send({"execute": "guest-sync", "arguments": {"id": self._sync_id}})
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(max(0.01, deadline - time.monotonic()))
            if reply.get("return") == self._sync_id:
                return

    def call(self, command: str, timeout: float = 10.0, **arguments: Any) -> Any:
        self._send({"execute": command, "arguments": arguments})
        reply = self._receive(timeout)
        if "error" in reply:
            raise AgentError(f"{command}: {reply['error']}")
        return reply.get("return")

    def wait_up(self, timeout: float) -> float:
        """Wait until the agent answers (the guest has booted that far); return seconds taken."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            try:
                self.sync(timeout=2.0)
                return time.monotonic() - started
            except (OSError, AgentError):
                self.close()
                if time.monotonic() > deadline:
                    raise AgentError(f"the guest agent did not answer within {timeout} s") from None
                time.sleep(0.5)

    def run(self, script: str, timeout: float = 60.0, stdin: bytes | None = None) -> Done:
        """Run `script` with /bin/sh -c in the guest as root; wait for it and return its output."""
        args: dict[str, Any] = {"path": "/bin/sh", "arg": ["-c", script], "capture-output": True}
        if stdin is not None:
            args["input-data"] = base64.b64encode(stdin).decode()
        pid = self.call("guest-exec", **args)["pid"]
        deadline = time.monotonic() + timeout
        while True:
            status = self.call("guest-exec-status", pid=pid)
            if status.get("exited"):
                code = status.get("exitcode")
                return Done(
                    code=int(code) if code is not None else -int(status.get("signal", 1)),
                    out=base64.b64decode(status.get("out-data", "")).decode("utf-8", "replace"),
                    err=base64.b64decode(status.get("err-data", "")).decode("utf-8", "replace"),
                )
            if time.monotonic() > deadline:
                raise AgentError(f"{script!r} still running after {timeout} s")
            time.sleep(0.1)

    def write_file(self, path: str, data: bytes, mode: str = "0644") -> None:
        """Write a file in the guest (through the command's standard input)."""
        self.run(f"cat > '{path}' && chmod {mode} '{path}'", stdin=data).check(f"write {path}")
