"""Sets of seqs kept as a few ranges: what needs no more sending, and runs of seqs.

Why this module exists: the outbox never flags a row as sent (marking 500 readings would
rewrite 500 rows); it keeps the seqs that need no more sending — acknowledged by the broker,
or deleted — as a handful of merged ranges, saved as one row of table ``state``
(gateway/store/state_rows.py). "Unsent" is then simply "stored, and not in the ranges".
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable


class SeqRanges:
    """A set of seqs kept as sorted, disjoint, merged inclusive ranges.

    Used for the seqs that need no more sending: acknowledged by the broker, or deleted.
    Acknowledgements arrive nearly in order, so the set is usually one or two ranges.
    """

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._lo: list[int] = []
        self._hi: list[int] = []
        for lo, hi in ranges:
            self.add(lo, hi)

    def add(self, lo: int, hi: int) -> None:
        """Add the seqs lo..hi (inclusive)."""
        if hi < lo:
            return
        if self._hi and self._lo[-1] <= lo <= self._hi[-1] + 1:
            self._hi[-1] = max(self._hi[-1], hi)  # the common case: extend the newest range
            return
        first = bisect.bisect_left(self._hi, lo - 1)
        end = bisect.bisect_right(self._lo, hi + 1)
        if first < end:
            lo = min(lo, self._lo[first])
            hi = max(hi, self._hi[end - 1])
        self._lo[first:end] = [lo]
        self._hi[first:end] = [hi]

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        i = bisect.bisect_right(self._lo, seq) - 1
        return i >= 0 and self._hi[i] >= seq

    def next_missing(self, seq: int) -> int:
        """The smallest seq >= `seq` not in the set."""
        i = bisect.bisect_right(self._lo, seq) - 1
        if i >= 0 and self._hi[i] >= seq:
            return self._hi[i] + 1
        return seq

    def next_present(self, seq: int) -> int | None:
        """The smallest seq >= `seq` in the set, or None."""
        i = bisect.bisect_left(self._hi, seq)
        if i < len(self._lo):
            return max(seq, self._lo[i])
        return None

    def count_upto(self, last: int) -> int:
        """How many seqs in 1..last are in the set."""
        total = 0
        for lo, hi in zip(self._lo, self._hi, strict=True):
            if lo > last:
                break
            total += min(hi, last) - lo + 1
        return total

    def ranges(self) -> list[tuple[int, int]]:
        """The ranges, lowest first."""
        return list(zip(self._lo, self._hi, strict=True))

    def __len__(self) -> int:
        return len(self._lo)


def runs_of(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Ascending seqs as inclusive runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    lo = prev = -2
    for seq in seqs:
        if seq != prev + 1:
            if prev >= 0:
                runs.append((lo, prev))
            lo = seq
        prev = seq
    if prev >= 0:
        runs.append((lo, prev))
    return runs
