"""``KeyedJagged``: the one ragged input type for multi-valued fields (keys, values, offsets), as in TorchRec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from recsys.errors import DataError


@dataclass(frozen=True)
class KeyedJagged:
    """Bags of ids for ``F`` keys and ``B`` examples, key-major: bag ``f * B + b`` is ``values[offsets[i]:offsets[i+1]]``.

    ``offsets`` has ``F * B + 1`` entries starting at 0; ``weights`` (optional) has one float per value.

    >>> kj = KeyedJagged.from_lists({"genres": [[1, 2], [3]], "tags": [[0], []]})
    >>> kj.values.tolist(), kj.offsets.tolist(), kj.batch_size
    ([1, 2, 3, 0], [0, 2, 3, 4, 4], 2)
    """

    keys: tuple[str, ...]
    values: Tensor
    offsets: Tensor
    weights: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return (len(self.offsets) - 1) // max(len(self.keys), 1)

    @property
    def lengths(self) -> Tensor:
        """Bag sizes, ``(F * B,)``."""
        return self.offsets.diff()

    def to(self, device: torch.device | str) -> KeyedJagged:
        weights = None if self.weights is None else self.weights.to(device)
        return KeyedJagged(self.keys, self.values.to(device), self.offsets.to(device), weights)

    @classmethod
    def from_lists(
        cls,
        bags: Mapping[str, Sequence[Sequence[int]]],
        weights: Mapping[str, Sequence[Sequence[float]]] | None = None,
    ) -> KeyedJagged:
        """Build from Python lists (tests, examples, small data prep); ``weights`` must cover every key or none."""
        keys = tuple(bags)
        sizes = {len(bags[k]) for k in keys}
        if len(sizes) > 1:
            raise DataError(
                f"keys have different numbers of examples: { {k: len(bags[k]) for k in keys} }",
                where="KeyedJagged.from_lists",
                fix="give every key one bag per example",
            )
        flat = [v for k in keys for bag in bags[k] for v in bag]
        lengths = [len(bag) for k in keys for bag in bags[k]]
        offsets = torch.tensor([0, *lengths], dtype=torch.long).cumsum(0)
        w = None
        if weights is not None:
            w = torch.tensor([x for k in keys for bag in weights[k] for x in bag], dtype=torch.float32)
        return cls(keys, torch.tensor(flat, dtype=torch.long), offsets, w)

    def validate(self, where: str) -> None:
        """Raise :class:`DataError` on wrong dtypes or offsets that do not describe ``values``."""
        if self.values.dtype != torch.long or self.offsets.dtype != torch.long:
            raise DataError(
                f"values and offsets must be torch.long, got {self.values.dtype} and {self.offsets.dtype}",
                where=where,
                fix="convert them with .long() (float ids lose precision above 2**24)",
            )
        if self.values.dim() != 1 or self.offsets.dim() != 1:
            raise DataError("values and offsets must be 1-D", where=where, fix="flatten the bags key-major")
        if len(self.offsets) < 1 or (len(self.offsets) - 1) % max(len(self.keys), 1) != 0:
            raise DataError(
                f"offsets has {len(self.offsets)} entries, not F * B + 1 for F={len(self.keys)} keys",
                where=where,
                fix="pass one offset per bag (key-major) plus the final total",
            )
        if int(self.offsets[0]) != 0 or int(self.offsets[-1]) != len(self.values) or bool((self.offsets.diff() < 0).any()):
            raise DataError(
                f"offsets must start at 0, never decrease and end at len(values)={len(self.values)}; "
                f"got first={int(self.offsets[0])}, last={int(self.offsets[-1])}",
                where=where,
                fix="build offsets as cumsum([0, *bag_lengths])",
            )
        if self.weights is not None and (self.weights.shape != self.values.shape or not self.weights.is_floating_point()):
            raise DataError(
                f"weights must be a float tensor shaped like values {tuple(self.values.shape)}, got "
                f"{self.weights.dtype} {tuple(self.weights.shape)}",
                where=where,
                fix="pass one float weight per value",
            )
