"""The fault scenarios of issue 7, each a function that runs it and returns what it counted.

Why this package exists: one implementation, two sizes: the fast cases in tests/faults/ call
these with small numbers and assert on the result; `benchmarks/chaos.py` calls them with the
issue's numbers and prints the same counts. Every scenario runs the real `cunxiang run`
(harness/faults/station.py) against a private Mosquitto and is judged the way the county centre
and the villagers would judge it, through harness/ledger.py (what arrived, by seq) and the ALSA
capture (what the loudspeakers got):

* ``lost``: records committed by the station (their seq is in its database) that never reached
  the centre, after the scenario's own repair step if it has one;
* ``duplicates``: deliveries of a seq beyond its first (at-least-once; the centre de-duplicates);
* ``sounded``: forged, replayed or otherwise unacceptable messages that made a sound;
* ``crashes``: service processes that died without being killed, failed to start again, or
  did not exit 0 on SIGTERM.

Each result also carries scenario-specific figures in ``details`` (the seed, how many kills hit
a broadcast, what `resend` repaired, RSS and descriptors, …). Seeds are printed so that any run
can be repeated.

This module only lists them; each lives in its own module:

=====  =====================================  ===========================
1      SIGKILL of the service                 harness/faults/kill9.py
2      broker SIGTERM/SIGKILL restarts         harness/faults/broker_restarts.py
3      network cut and packet loss             harness/faults/network_cut.py
4      full disk                               harness/faults/full_disk.py
5      garbage on every serial port            harness/faults/serial_garbage.py
6, 6b  hostile downlink, untrusted key text    harness/faults/hostile_downlink.py
7      soak                                    harness/faults/soak.py
=====  =====================================  ===========================
"""

from harness.faults.broker_restarts import broker_restarts
from harness.faults.common import ScenarioResult
from harness.faults.full_disk import full_disk
from harness.faults.hostile_downlink import hostile_downlink, surrogate_key
from harness.faults.kill9 import kill9
from harness.faults.network_cut import network_cut
from harness.faults.serial_garbage import serial_garbage
from harness.faults.soak import soak

__all__ = [
    "ScenarioResult",
    "broker_restarts",
    "full_disk",
    "hostile_downlink",
    "kill9",
    "network_cut",
    "serial_garbage",
    "soak",
    "surrogate_key",
]
