"""The rigs the tests and the benchmarks share; neither imports the other (tests/test_import_boundaries.py).

Why this package exists: a figure and the test that guards it must run the same station the
same way, or they drift apart. Everything that stands around the station lives here once:

* the broker and the centre: `mosquitto` (a private Mosquitto, a subscriber), `ledger` (the
  centre counting every seq), `station` (configs, the centre's signing key, `cunxiang run` in
  a process or in a thread), `station_db` (the database looked at from outside);
* sound: `sounds` (what a station is given to play, found again in a capture),
  `alsa_capture` (what the loudspeakers got), `cap_vectors` (the real CAP messages),
  `text_first_sound` (a cold text alert timed to its first sound);
* many stations: `fleet`, `fleet_centre`, `crashloop`;
* faults: `faults/` (the scenarios of docs/faults.md), `hostile`, `serial_noise`,
  `serial_ports`, `netns`, `tmpfs`, `link_proxy`, `tuned_gateway`, `tls`;
* the box: `box/` (the .deb booted under qemu, its power cut);
* reading the results: `procstat`, `proc_watch`, `stats`, `figures` (the targets table the
  benchmark suite measures and its smoke test checks).

pytest fixtures stay in tests/ (conftest.py files); what only a test uses stays in tests/.
"""
