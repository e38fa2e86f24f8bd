"""The running service's status socket: a local Unix socket that answers "how are you now?".

Why this module exists: ``cunxiang status`` must show what the service knows at this moment
(connected or not, the backlog, the sensors' last values), not what it last saved to the
database. So the service answers status requests itself, on the event loop, and the command
line asks it first (docs/operations.md "Live status").

Where the socket is (`socket_path`):

* under systemd, in the unit's runtime directory: ``$RUNTIME_DIRECTORY/status.sock``, that is
  ``/run/cunxiang/status.sock`` (``RuntimeDirectory=cunxiang``; systemd removes it when the
  service stops);
* otherwise next to the database: ``<storage.path>.sock`` (beside ``<storage.path>.lock``).

The command line, which does not run under the unit, tries the places in that order
(`candidate_paths`) and takes the first answer whose ``database`` is its config's.

The exchange: the client connects, sends one JSON object on one line (``{"get": "status"}``)
and reads one JSON line back, either ``{"ok": true, "answer_ms": …, "answer_cpu_ms": …,
"status": {…}}`` — the time the service spent building the answer (wall clock, and its
thread's CPU) and the ``status --json`` document of gateway/status/model.py — or
``{"ok": false, "error": "…"}``; then the service closes the connection. A client can never
hold up the loop: the request is at most `MAX_REQUEST_BYTES`, it must arrive within
`READ_TIMEOUT_S`, the answer must be taken within `WRITE_TIMEOUT_S`, and at most `MAX_CLIENTS`
connections are served at once (more are closed at once). The socket is mode 0660: the
service's user and group only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The runtime directory of the systemd unit (systemd/cunxiang.service ``RuntimeDirectory=``).
SYSTEMD_RUNTIME_DIR = Path("/run/cunxiang")
SOCKET_NAME = "status.sock"
MAX_REQUEST_BYTES = 4096
READ_TIMEOUT_S = 2.0
WRITE_TIMEOUT_S = 2.0
MAX_CLIENTS = 8
#: A status answer at most this large is read by the client (it is a few KiB).
MAX_ANSWER_BYTES = 4 * 1024 * 1024
#: An answer that took the service longer than this is logged as a warning (it is a bug).
SLOW_ANSWER_MS = 20.0
#: Longest path a Unix socket can bind to (sun_path, with its terminating NUL).
MAX_PATH_BYTES = 107


def socket_path(database: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """Where the service listens: the systemd runtime directory, else beside the database."""
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / SOCKET_NAME
    return database.with_name(database.name + ".sock")


def candidate_paths(database: Path, environ: Mapping[str, str] = os.environ) -> list[Path]:
    """Where the command line looks for the service, in order, without repeats."""
    paths = [
        socket_path(database, environ),
        SYSTEMD_RUNTIME_DIR / SOCKET_NAME,
        socket_path(database, {}),
    ]
    return list(dict.fromkeys(paths))


class StatusServer:
    """Serves `answer()` (a JSON-able dict) on a Unix socket from the running event loop."""

    def __init__(self, path: Path, answer: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self._answer = answer
        self._server: asyncio.AbstractServer | None = None
        self._clients = 0
        self.answered = 0
        self.slowest_ms = 0.0

    async def start(self) -> bool:
        """Listen; False (and a logged reason) if the socket cannot be made: status still works
        from the database, so the service runs on."""
        try:
            sock = self._bind()
            self._server = await asyncio.start_unix_server(
                self._serve, sock=sock, limit=MAX_REQUEST_BYTES
            )
        except (OSError, ValueError) as exc:
            log.warning(
                "no live status: cannot listen on %s (%s); `cunxiang status` shows the database",
                self.path,
                exc,
            )
            return False
        log.info("answering status requests on %s", self.path)
        return True

    def _bind(self) -> socket.socket:
        if len(os.fsencode(self.path)) > MAX_PATH_BYTES:
            raise ValueError(f"the path is longer than {MAX_PATH_BYTES} bytes")
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise ValueError("a file that is not a socket is in the way; it was left alone")
            self.path.unlink()  # left by a service that died: the database lock says we are alone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Between bind and chmod the mode is 0777 & ~umask: never more open than 0660 is
            # for connecting, which needs write permission.
            sock.bind(str(self.path))
            os.chmod(self.path, 0o660)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= MAX_CLIENTS:
            writer.transport.abort()
            return
        self._clients += 1
        try:
            reply = await self._reply_to(reader)
            writer.write(json.dumps(reply, ensure_ascii=False, default=str).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
            writer.close()
        except (TimeoutError, ConnectionError, OSError):
            writer.transport.abort()
        finally:
            self._clients -= 1

    async def _reply_to(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
        except TimeoutError:
            return {"ok": False, "error": f"no request within {READ_TIMEOUT_S:g} s"}
        except (ValueError, asyncio.LimitOverrunError):
            return {"ok": False, "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
        try:
            request = json.loads(line)
        except ValueError:
            request = None
        if not isinstance(request, dict) or request.get("get") != "status":
            return {"ok": False, "error": 'send one line: {"get": "status"}'}
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            status = self._answer()
        except Exception:
            log.exception("building the status answer failed")
            return {"ok": False, "error": "the service could not build its status (see its log)"}
        elapsed_ms = (time.perf_counter() - started) * 1000
        cpu_ms = (time.thread_time() - cpu_started) * 1000
        self.answered += 1
        self.slowest_ms = max(self.slowest_ms, elapsed_ms)
        level = logging.WARNING if elapsed_ms > SLOW_ANSWER_MS else logging.DEBUG
        log.log(level, "status request answered in %.2f ms (%.2f ms CPU)", elapsed_ms, cpu_ms)
        return {
            "ok": True,
            "answer_ms": round(elapsed_ms, 3),
            "answer_cpu_ms": round(cpu_ms, 3),
            "status": status,
        }


class NoAnswer(Exception):
    """The service did not answer on any status socket; the message says why."""


def ask_service(paths: list[Path], database: Path, timeout_s: float = 2.0) -> dict[str, Any]:
    """The first ``{"ok": true, …}`` answer from `paths` about `database` (for the command line).

    NoAnswer if none answers within `timeout_s` in all: a socket file left by a dead service
    refuses at once, a hung service times out; nothing waits longer than `timeout_s`. An
    answer from a service of another database (another station's) is passed over.
    """
    deadline = time.monotonic() + timeout_s
    reasons = []
    for path in paths:
        if not path.exists():
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            reasons.append(f"{path}: no time left")
            break
        try:
            reply = _ask(path, remaining)
        except (OSError, ValueError) as exc:
            reasons.append(f"{path}: {_why(exc)}")
            continue
        theirs = Path(str(reply["status"].get("database")))
        if theirs.resolve() == database.resolve():
            return reply
        reasons.append(f"{path}: a service of another database ({theirs})")
    raise NoAnswer("; ".join(reasons) or "no status socket (the service is not running)")


def _ask(path: Path, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(b'{"get": "status"}\n')
        chunks = []
        size = 0
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise ValueError("the answer is too large")
    reply = json.loads(b"".join(chunks))
    if not isinstance(reply, dict):
        raise ValueError("the answer is not a JSON object")
    if reply.get("ok") is not True or not isinstance(reply.get("status"), dict):
        raise ValueError(f"the service answered: {reply.get('error', 'no status')}")
    return reply


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "nobody listens (a socket left by a service that stopped)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer in time (the service may be stuck)"
    if isinstance(exc, PermissionError):
        return "permission denied (run as root or as the service's user or group)"
    return str(exc) or type(exc).__name__
