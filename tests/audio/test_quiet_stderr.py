"""Silencing PortAudio's start-up noise must not swallow the service's own log lines.

fd 2 is process-wide: while the audio worker points it at /dev/null, a line the
event loop logs at that moment would be lost. This happened — the station's
"running" and "sensor_fault" lines vanished at start-up — and is the regression test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import logging, sys, threading, time
    from audio.player import quiet_stderr
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    inside = threading.Event()
    def noisy_init():
        with quiet_stderr():
            inside.set()
            sys.stderr.write("JACK noise\\n"); sys.stderr.flush()
            time.sleep(0.3)
    worker = threading.Thread(target=noisy_init)
    worker.start()
    inside.wait()
    logging.info("station running")
    worker.join()
    logging.info("after")
    """
)


def test_log_lines_written_while_stderr_is_quieted_are_kept() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "station running" in result.stderr
    assert "after" in result.stderr
    assert "JACK noise" not in result.stderr
