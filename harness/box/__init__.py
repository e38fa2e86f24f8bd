"""The box: the .deb installed into a Debian image, booted under qemu, its power cut.

Why this package exists: the box tests (tests/box/) and the long runs (benchmarks/powercut.py,
benchmarks/box_smoke.py) boot the same VM (vm.py), talk to it the same way (agent.py),
configure the station the same way (station.py) and judge a power cut the same way
(powercut.py); docs/box.md describes it.
"""
