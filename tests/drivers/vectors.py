"""Frames as the devices put them on the wire, kept beside the tests (rtl_433 style).

ZE07-CO commands are verbatim from the Winsen datasheet (and docs/config.md); the value frames follow
its byte layout, with checksums worked out by hand. The Modbus frames were captured between the
driver and a pymodbus server for the "common Chinese map" (decimals at 0x0003, value at 0x0004),
CRC-16/MODBUS low byte first.
"""

from __future__ import annotations

# (frame, kind, ppm)
ZE07_FRAMES = [
    ("FF 04 03 01 00 7B 13 88 E2", "active", 12.3),
    ("FF 04 03 01 00 00 13 88 5D", "active", 0.0),
    ("FF 04 03 01 13 88 13 88 C2", "active", 500.0),
    ("FF 86 00 2A 00 00 00 00 50", "qa", 4.2),
    ("FF 86 01 F4 00 00 00 00 85", "qa", 50.0),
]
ZE07_QUERY = "FF 01 86 00 00 00 00 00 79"
ZE07_SWITCH_QA = "FF 01 78 41 00 00 00 00 46"
ZE07_SWITCH_ACTIVE = "FF 01 78 40 00 00 00 00 47"

# unit 1 reads 2 registers from 0x0003: decimals, then the value
MODBUS_REQUEST_3_4 = "01 03 00 03 00 02 34 0B"
# ... and the transmitter answers decimals 2, value 1234 (12.34 m)
MODBUS_REPLY_2_1234 = "01 03 04 00 02 04 D2 D9 6E"


def frame(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))
