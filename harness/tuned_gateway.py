"""`python -m gateway` with some module constants changed first: the fault suite's time machine.

Why this module exists: some limits are sized for months in a village, not for a test that must
finish in seconds: the in-memory reading buffer that rides out a full disk holds 100,000
readings, and folded `downlink_rejected` events wait for the end of a one-minute window. A test
that wants to see the buffer overflow or a window close runs the real service with a smaller
constant:

    python -m harness.tuned_gateway gateway.store.writer.MAX_BUFFERED_READINGS=2000 -- run -c FILE

Each ``module.NAME=VALUE`` (VALUE a Python literal) is set before the command line runs; the
module must already define NAME, so a renamed constant fails loudly instead of silently testing
nothing. Everything after ``--`` is `cunxiang`'s own command line.
"""

from __future__ import annotations

import ast
import importlib
import sys


def apply(assignments: list[str]) -> None:
    """Set each ``module.NAME=VALUE``; SystemExit naming the one that cannot be applied."""
    for item in assignments:
        target, _, text = item.partition("=")
        module_name, _, name = target.rpartition(".")
        module = importlib.import_module(module_name)
        if not hasattr(module, name):
            raise SystemExit(f"tuned_gateway: {module_name} has no {name}")
        setattr(module, name, ast.literal_eval(text))


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit("usage: python -m harness.tuned_gateway MOD.NAME=VALUE ... -- ARGS")
    split = argv.index("--")
    apply(argv[:split])
    from gateway.cli.main import main as cunxiang

    sys.argv = ["cunxiang", *argv[split + 1 :]]
    cunxiang()


if __name__ == "__main__":
    main(sys.argv[1:])
