"""Log lines for journald or a terminal, with secrets taken out.

Why this module exists: under systemd, stderr goes to the journal, which adds
its own timestamp and reads a ``<N>`` syslog priority at the start of each
line (``<3>`` error ... ``<7>`` debug), so ``journalctl -p warning`` works. At
a terminal a technician wants the time on each line instead. Either way a
password or a private key must never reach a log line: a handler filter
redacts PEM private-key blocks, ``password=...``-style pairs and every value
registered with :func:`register_secret` (the MQTT password read from its file,
for instance) from the message, its arguments and any traceback.

Under systemd it also arms :mod:`faulthandler`: when the watchdog gives up on a
wedged service it sends SIGABRT, and the journal then shows where every
thread was stuck.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO

from gateway.untrusted import escape_controls, has_controls

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
REDACTED = "[redacted]"
# Registered secrets shorter than this are not searched for: redacting every
# "ab" in every line would make the log unreadable and protect little.
MIN_SECRET_CHARS = 4

_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----"  # PKCS#8, RSA, EC, ENCRYPTED, OPENSSH
    r"(?:.*?-----END \1PRIVATE KEY-----|.*\Z)",  # an unterminated block: to the end
    re.DOTALL,
)
_KEY_VALUE = re.compile(
    r"(?i)\b(password|passwd|passphrase|pwd|secret|token)"
    r"([\"']?\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,;&\"'})\]]+)"
)


def _syslog_priority(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class SecretRedactor:
    """Removes secrets from text. One per process (see :data:`_REDACTOR`)."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def register(self, value: str) -> None:
        # Also as the log filter escapes it (a key file's newlines become "\\n").
        stripped = value.strip()
        for candidate in {value, stripped, escape_controls(value), escape_controls(stripped)}:
            if len(candidate) >= MIN_SECRET_CHARS:
                with self._lock:
                    self._secrets.add(candidate)

    def redact(self, text: str) -> str:
        text = _PEM_PRIVATE_KEY.sub(f"-----{REDACTED} PRIVATE KEY-----", text)
        text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return text


# The one piece of process-wide state here: logging itself is process-wide,
# and a secret registered anywhere must be hidden from every handler.
_REDACTOR = SecretRedactor()


def register_secret(value: str) -> None:
    """Never let ``value`` (a password, a key file's content) appear in a log line."""
    _REDACTOR.register(value)


class RedactingFilter(logging.Filter):
    """Rewrites each record with its secrets removed; never drops a record."""

    def __init__(self, redactor: SecretRedactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.args = _escaped_args(record.args)
        record.msg = self._redactor.redact(_message(record))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redactor.redact(record.stack_info)
        return True


def _escaped_args(args: Any) -> Any:
    """Arguments with control characters escaped: a value from outside cannot break the line.

    The format string is the program's own; what fills it may come from the network
    (gateway/untrusted.py).
    """
    if isinstance(args, tuple):
        return tuple(escape_controls(a) if isinstance(a, str) else _escape_obj(a) for a in args)
    return args


def _escape_obj(value: Any) -> Any:
    """An exception or other object whose text holds a control character becomes that text,
    escaped; anything else is left for the format string (``%d``, ``%r`` …) as it is."""
    if value is None or isinstance(value, int | float | bool):
        return value
    try:
        text = str(value)
    except Exception:  # a __str__ that fails must not lose the line
        return value
    return escape_controls(text) if has_controls(text) else value


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # bad %-arguments must not lose the line
        return f"{record.msg!r} % {record.args!r}"


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``, the priority repeated on every line of the record."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_syslog_priority(record.levelno)}>"
        lines = super().format(record).splitlines() or [""]
        return "\n".join(prefix + line for line in lines)


HUMAN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def under_systemd(environ: Mapping[str, str] | None = None) -> bool:
    """True when started by systemd (stderr goes to the journal)."""
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


class _CunxiangHandler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installed, so a second setup replaces it."""


def setup_logging(level: str = "info", *, stream: TextIO | None = None) -> None:
    """Send all logging to stderr (or ``stream``) in the form that suits where it goes."""
    try:
        levelno = LEVELS[level.lower()]
    except KeyError:
        allowed = ", ".join(LEVELS)
        raise ValueError(f"log level {level!r} is not one of: {allowed}") from None
    handler = _CunxiangHandler(sys.stderr if stream is None else stream)
    if under_systemd():
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(HUMAN_FORMAT))
    handler.addFilter(RedactingFilter(_REDACTOR))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CunxiangHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(levelno)
    if stream is None and under_systemd():
        # The watchdog kills a wedged service with SIGABRT: this puts the Python stack
        # of every thread into the journal first, showing where it was stuck.
        faulthandler.enable(file=sys.stderr, all_threads=True)
