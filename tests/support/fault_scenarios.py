"""The fault scenarios of issue 7, each a function that runs it and returns what it counted.

One implementation, two sizes: the fast cases in tests/faults/ call these with small numbers
and assert on the result; `benchmarks/chaos.py` calls them with the issue's numbers and prints
the same counts. Every scenario runs the real `cunxiang run` (tests/support/fault_station.py)
against a private Mosquitto and is judged the way the county centre and the villagers would
judge it, through tests/support/ledger.py (what arrived, by seq) and the ALSA capture (what the
loudspeakers got):

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
1      SIGKILL of the service                 tests/support/fault_kill9.py
2      broker SIGTERM/SIGKILL restarts         tests/support/fault_broker.py
3      network cut and packet loss             tests/support/fault_network.py
4      full disk                               tests/support/fault_disk.py
5      garbage on every serial port            tests/support/fault_serial.py
6, 6b  hostile downlink, untrusted key text    tests/support/fault_hostile.py
7      soak                                    tests/support/fault_soak.py
=====  =====================================  ===========================
"""

from tests.support.fault_broker import broker_restarts
from tests.support.fault_common import ScenarioResult
from tests.support.fault_disk import full_disk
from tests.support.fault_hostile import hostile_downlink, surrogate_key
from tests.support.fault_kill9 import kill9
from tests.support.fault_network import network_cut
from tests.support.fault_serial import serial_garbage
from tests.support.fault_soak import soak

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
