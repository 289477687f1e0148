"""Which units an experiment has seen, in fixed memory: a Bloom filter of their hashes.

A test that takes one reward per unit needs to know, for each request, whether
its unit came before. A set of every unit grows with the traffic; this filter
does not (512 KiB by default). It can take a new unit for one seen before (a
false positive: about 2 % of new units once 500,000 are in, 14 % once a
million are; measured, 0.5 % of the first 500,000 and 3.9 % of the first
million), never the other way round: a seen unit is never counted again, which is what keeps
the test valid, and a new unit wrongly taken for a seen one is only a reward
the test does without. Which units those are depends on their hashes, not on
their arm or their rewards, so the test's level is untouched (Bloom 1970;
Kirsch and Mitzenmacher 2006 for the two-hash construction).

>>> seen = FirstSeen(bits=1 << 12)
>>> [seen.first(key) for key in (11, 22, 11, 33, 22)]
[True, True, False, True, False]
>>> seen = FirstSeen(bits=1 << 16)
>>> sum(seen.first(key * 2654435761 % 2**64) for key in range(1000))
1000
"""

from __future__ import annotations

__all__ = ["FirstSeen"]


class FirstSeen:
    """A Bloom filter of 64-bit unit hashes (see the module docstring)."""

    def __init__(self, bits: int = 1 << 22, hashes: int = 4) -> None:
        if bits < 8 or bits & (bits - 1):
            raise ValueError(f"bits {bits} must be a power of two, at least 8")
        self.mask = bits - 1
        self.hashes = hashes
        self.bitmap = bytearray(bits // 8)

    def first(self, key: int) -> bool:
        """Whether ``key`` (a 64-bit hash) was not seen before; it is seen from now on."""
        bitmap, mask = self.bitmap, self.mask
        position, step = key & mask, (key >> 32) | 1  # an odd step visits distinct bits
        new = False
        for _ in range(self.hashes):
            byte, bit = position >> 3, 1 << (position & 7)
            if not bitmap[byte] & bit:
                bitmap[byte] |= bit
                new = True
            position = (position + step) & mask
        return new
