"""`cunxiang` whose downlink handler kills the process on one given message: a poison message.

The poison-message guard (gateway/downlink/poison.py) exists for a message whose handling kills the
service — a parser bug, the OOM killer. No real message does that today, so the test makes
one: this wrapper runs the real command line with `Intake.handle` patched to ``os._exit(70)``
when the SHA-256 of the MQTT payload equals ``CUNXIANG_TEST_CRASH_SHA256``. The variable is
set only in the environment of the test's subprocess; the service itself has no such hook.

    CUNXIANG_TEST_CRASH_SHA256=<hex> python -m tests.support.crashing_gateway run -c FILE
"""

from __future__ import annotations

import hashlib
import os
import sys

from gateway.downlink import intake

CRASH_ENV = "CUNXIANG_TEST_CRASH_SHA256"
CRASH_EXIT_CODE = 70


def install(target: str) -> None:
    """Make `Intake.handle` end the process on the message whose SHA-256 is `target`."""
    handle = intake.Intake.handle

    def crashing(self: intake.Intake, topic: str, payload: bytes) -> None:
        if hashlib.sha256(payload).hexdigest() == target:
            sys.stderr.write("crashing_gateway: the poison message; exiting\n")
            sys.stderr.flush()
            os._exit(CRASH_EXIT_CODE)
        handle(self, topic, payload)

    intake.Intake.handle = crashing  # type: ignore[method-assign]


def main() -> None:
    target = os.environ.get(CRASH_ENV, "")
    if len(target) != 64:
        raise SystemExit(f"crashing_gateway: set {CRASH_ENV} to a hex SHA-256")
    install(target)
    from gateway.cli.main import main as cunxiang

    sys.argv = ["cunxiang", *sys.argv[1:]]
    cunxiang()


if __name__ == "__main__":
    main()
