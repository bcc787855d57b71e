"""Power-of-two shape buckets, shared by the sampler and the learner.

Every distinct array shape is one XLA compilation; rounding lengths and row counts up to a power
of two bounds how many shapes varying prompts, dialogues and batches can cause.
"""

from __future__ import annotations


def bucket(n: int, minimum: int = 1, maximum: int | None = None) -> int:
    """The smallest `minimum * 2**k` >= n (a power of two when `minimum` is one), capped at
    `maximum`."""
    size = max(int(minimum), 1)
    while size < n:
        size *= 2
    return size if maximum is None else min(size, maximum)
