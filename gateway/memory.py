"""Give large freed buffers back to the system at once, so peak memory tracks what is held.

The service handles multi-megabyte transient buffers: an inline WAV decoded to check it, the
PCM of the broadcast playing and the next one, a CAP document. glibc serves blocks over its
mmap threshold (128 KiB) with mmap and returns them on free, but it *raises* that threshold
to the size of every mmapped block freed (up to 32 MiB). After the first few audio buffers,
later ones come from the heap and stay resident after they are freed: 40 queued voice alerts
left the service 49 MiB bigger with the dynamic threshold and 16 MiB bigger with it fixed
(tests/e2e/test_queue_bound.py). A station under `MemoryMax=256M` needs the second figure.

Setting the threshold with mallopt() fixes it and turns the dynamic adjustment off. On a C
library without mallopt (musl has a no-op one) nothing changes.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

#: mallopt() parameter number of M_MMAP_THRESHOLD in glibc's malloc.h.
M_MMAP_THRESHOLD = -3
#: glibc's default threshold: blocks this big or bigger are mmapped and returned when freed.
MMAP_THRESHOLD_BYTES = 128 * 1024


def return_large_buffers(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix the C library's mmap threshold at `threshold` bytes; True if the library took it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    taken = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    log.debug("malloc mmap threshold fixed at %d bytes: %s", threshold, taken)
    return taken
