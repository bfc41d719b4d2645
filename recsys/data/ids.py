"""Reserved indices, defined once: padding 0, items 1..N in padded sequences, mask N + 1."""

from __future__ import annotations

PADDING_INDEX = 0
"""Index of padding in padded item sequences; item ``i`` is stored there as ``i + ITEM_SHIFT``."""

ITEM_SHIFT = 1
"""Offset added to item indices in padded sequences so that 0 stays free for padding."""


def mask_index(num_items: int) -> int:
    """Index of the mask token in padded sequences (``num_items + 1``).

    >>> mask_index(10)
    11
    """
    return num_items + ITEM_SHIFT
