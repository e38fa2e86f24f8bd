"""Log lines as journald and a technician see them, and secrets kept out of them."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.logs import REDACTED, SecretRedactor, register_secret, setup_logging

PROJECT = Path(__file__).resolve().parents[2]
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def no_systemd_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    return monkeypatch


def _log_every_level(stream: io.StringIO) -> list[str]:
    log = logging.getLogger("gateway.test")
    log.debug("debug line")
    log.info("info line")
    log.warning("warning line")
    log.error("error line")
    log.critical("critical line")
    return stream.getvalue().splitlines()


@pytest.mark.parametrize("variable", ["JOURNAL_STREAM", "INVOCATION_ID"])
def test_under_systemd_lines_carry_priorities_and_no_time(
    no_systemd_env: pytest.MonkeyPatch, variable: str
) -> None:
    no_systemd_env.setenv(variable, "8:12345" if variable == "JOURNAL_STREAM" else "abc123")
    stream = io.StringIO()
    setup_logging("debug", stream=stream)
    lines = _log_every_level(stream)
    assert lines == [
        "<7>gateway.test: debug line",
        "<6>gateway.test: info line",
        "<4>gateway.test: warning line",
        "<3>gateway.test: error line",
        "<2>gateway.test: critical line",
    ]


def test_every_line_of_a_traceback_gets_the_priority(no_systemd_env: pytest.MonkeyPatch) -> None:
    no_systemd_env.setenv("JOURNAL_STREAM", "8:12345")
    stream = io.StringIO()
    setup_logging("info", stream=stream)
    try:
        raise OSError("serial port /dev/ttyUSB0 vanished")
    except OSError:
        logging.getLogger("drivers.ze07").exception("sensor co-1 failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines)
    assert lines[0] == "<3>drivers.ze07: sensor co-1 failed"
    assert lines[-1] == "<3>OSError: serial port /dev/ttyUSB0 vanished"
    assert not any(TIMESTAMP.search(line) for line in lines)


def test_at_a_terminal_lines_carry_the_time_and_no_priority(
    no_systemd_env: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    setup_logging("info", stream=stream)
    lines = _log_every_level(stream)
    assert len(lines) == 4  # debug is below "info"
    for line, level in zip(lines, ["INFO", "WARNING", "ERROR", "CRITICAL"], strict=True):
        assert TIMESTAMP.search(line), line
        assert not line.startswith("<")
        assert f" {level} " in line


def test_setup_twice_keeps_one_handler(no_systemd_env: pytest.MonkeyPatch) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", stream=first)
    setup_logging("info", stream=second)
    logging.getLogger("gateway.test").warning("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


def test_a_bad_level_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="'loud' is not one of: debug, info, warning, error"):
        setup_logging("loud")


def test_real_process_under_journal_stream_writes_priorities_to_stderr() -> None:
    code = (
        "import logging; from gateway.logs import setup_logging; setup_logging('info'); "
        "logging.getLogger('gateway.uplink.link').warning('broker unreachable, buffering')"
    )
    env = {**os.environ, "JOURNAL_STREAM": "8:4242", "PYTHONPATH": str(PROJECT)}
    env.pop("INVOCATION_ID", None)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout == ""
    assert done.stderr == "<4>gateway.uplink.link: broker unreachable, buffering\n"


def _pem_private_key() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _body(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


@pytest.mark.parametrize("systemd", [True, False])
def test_private_keys_and_passwords_never_reach_a_line(
    no_systemd_env: pytest.MonkeyPatch, systemd: bool
) -> None:
    if systemd:
        no_systemd_env.setenv("JOURNAL_STREAM", "8:1")
    pem = _pem_private_key()
    mqtt_password = "Zx9-qq!station-371581"
    register_secret(mqtt_password + "\n")  # as read from a password file
    stream = io.StringIO()
    setup_logging("debug", stream=stream)
    log = logging.getLogger("gateway.uplink.link")

    log.info("loaded client key %s", pem)
    log.debug("connect host=broker.example password=%s keepalive=30", "hunter22")
    log.debug('config {"username": "st01", "password": "s3cret pass"}')
    log.warning("auth failed for %s", mqtt_password)
    logging.getLogger("paho.mqtt").info("paho says: %s", mqtt_password)
    try:
        raise PermissionError(f"broker refused password {mqtt_password}")
    except PermissionError:
        log.exception("connection failed")
    truncated = pem[: len(pem) // 2]  # a key cut off mid-block
    log.error("bad key file: %s", truncated)

    out = stream.getvalue()
    for secret in [_body(pem)[:24], mqtt_password, "hunter22", "s3cret"]:
        assert secret not in out, f"{secret!r} leaked"
    assert "PRIVATE KEY-----" in out  # it says what was there ...
    assert out.count(REDACTED) == 7  # ... and that it was removed, once per secret
    assert "connect host=broker.example password=[redacted] keepalive=30" in out
    assert "auth failed for [redacted]" in out
    assert "username" in out and "st01" in out  # ordinary values stay readable


def test_short_secrets_are_not_registered() -> None:
    redactor = SecretRedactor()
    redactor.register("ab")
    redactor.register("   \n")
    assert redactor.redact("about a tab") == "about a tab"


@settings(max_examples=200, deadline=None)
@given(
    # Without brackets a secret cannot straddle the "[redacted]" marker.
    secret=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="[]"),
        min_size=4,
    ),
    before=st.text(),
    after=st.text(),
)
def test_a_registered_secret_never_survives(secret: str, before: str, after: str) -> None:
    assume(secret not in REDACTED)
    redactor = SecretRedactor()
    redactor.register(secret)
    # A secret may itself have padding: registration also covers the stripped value.
    core = secret.strip()
    out = redactor.redact(before + secret + after + secret)
    if len(core) >= 4 and core not in REDACTED:
        assert core not in out
    assert secret not in out


WEDGED_CHILD = """
import logging, sys, threading, time
from gateway.logs import setup_logging

def wedged_audio_write():
    time.sleep(60)  # stands in for a write to a hung sound device

setup_logging("info")
threading.Thread(target=wedged_audio_write, daemon=True).start()
logging.getLogger("gateway.service").info("running")
time.sleep(60)
"""


def test_a_watchdog_abort_puts_every_threads_stack_in_the_journal() -> None:
    """systemd's watchdog kills with SIGABRT; stderr (the journal) then shows the stuck thread."""
    env = {**os.environ, "JOURNAL_STREAM": "8:4242", "PYTHONPATH": str(PROJECT)}
    child = subprocess.Popen(
        [sys.executable, "-c", WEDGED_CHILD], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stderr is not None
        assert child.stderr.readline() == "<6>gateway.service: running\n"
        child.send_signal(signal.SIGABRT)
        rest = child.stderr.read()
        assert child.wait(timeout=10) == -signal.SIGABRT
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "Fatal Python error: Aborted" in rest
    assert "in wedged_audio_write" in rest
