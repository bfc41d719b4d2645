"""The Huffman tree of word2vec's hierarchical softmax: every word's path of inner nodes and left/right bits.

Built as gensim 4 builds it (``gensim.models.word2vec._build_heap`` / ``_assign_binary_codes``), so the
codes agree with gensim's on the same counts, ties included: a heap of the ``V`` words ordered by count
alone, ``V - 1`` merges of the two smallest, the ``i``-th merge creating inner node ``i`` (the root is
``V - 2``) with the first popped child on bit 0 and the second on bit 1. word2vec.c merges the same way
but breaks count ties towards inner nodes, so on tied counts its tree can differ (not its cost).
The heap is one Python loop over the vocabulary, once per fit, like gensim's; the paths are then read
off for all words at once, one vector step per tree level.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import torch
from torch import Tensor

from recsys.errors import DataError

__all__ = ["HuffmanTree"]


class _Node:
    """A heap entry ordered by count alone, as gensim's ``Heapitem`` (so ties fall as they fall in gensim)."""

    __slots__ = ("count", "index")

    def __init__(self, count: int, index: int) -> None:
        self.count, self.index = count, index

    def __lt__(self, other: _Node) -> bool:
        return self.count < other.count


@dataclass(frozen=True)
class HuffmanTree:
    """Paths from the root to every word, padded to the deepest: inner nodes ``points`` and bits ``codes``.

    Word ``w`` has ``lengths[w]`` steps; step ``j`` leaves inner node ``points[w, j]`` (``0..V-2``, the
    root first) towards bit ``codes[w, j]``; past the path both are 0.

    >>> tree = HuffmanTree.from_counts(torch.tensor([5, 4, 2, 1]))
    >>> tree.lengths.tolist(), tree.codes.tolist(), tree.points.tolist()
    ([1, 2, 3, 3], [[0, 0, 0], [1, 1, 0], [1, 0, 1], [1, 0, 0]], [[2, 0, 0], [2, 1, 0], [2, 1, 0], [2, 1, 0]])
    """

    codes: Tensor  # (V, L) long, 0/1, 0 past the path
    points: Tensor  # (V, L) long inner-node indices, root first, 0 past the path
    lengths: Tensor  # (V,) long

    @classmethod
    def from_counts(cls, counts: Tensor) -> HuffmanTree:
        """The tree over ``counts (V,)`` in vocabulary order (gensim's: descending counts)."""
        size = len(counts)
        if size == 0:
            raise DataError("a Huffman tree needs at least one word", where="HuffmanTree.from_counts", fix="pass a non-empty count vector")
        parent = torch.zeros(2 * size - 1, dtype=torch.long)  # node -> its parent (leaves 0..V-1, inner V..2V-2)
        bit = torch.zeros(2 * size - 1, dtype=torch.long)  # node -> its bit under that parent
        heap = [_Node(int(c), i) for i, c in enumerate(counts.tolist())]
        heapq.heapify(heap)
        merged = []
        for i in range(size - 1):
            first, second = heapq.heappop(heap), heapq.heappop(heap)
            heapq.heappush(heap, _Node(first.count + second.count, size + i))
            merged.append((first.index, second.index))
        if merged:
            children = torch.tensor(merged, dtype=torch.long)  # (V-1, 2)
            parent[children.flatten()] = torch.arange(size, 2 * size - 1).repeat_interleave(2)
            bit[children[:, 1]] = 1
        root = 2 * size - 2
        # climb from every leaf at once: step j holds the j-th node above the leaf (leaf first)
        node, up_codes, up_points = torch.arange(size), [], []
        while bool((node != root).any()):
            climbing = node != root
            up_codes.append(torch.where(climbing, bit[node], 0))
            node = torch.where(climbing, parent[node], root)
            up_points.append(torch.where(climbing, node - size, -1))
        if not up_codes:  # one word: empty paths
            empty = torch.zeros(size, 0, dtype=torch.long)
            return cls(empty, empty.clone(), torch.zeros(size, dtype=torch.long))
        codes, points = torch.stack(up_codes, 1), torch.stack(up_points, 1)  # (V, L), leaf end first
        lengths = (points >= 0).sum(1)
        step = torch.arange(codes.shape[1])
        inside = step < lengths.unsqueeze(1)  # (V, L)
        source = (lengths.unsqueeze(1) - 1 - step).clamp_min(0)  # reverse each path: root first
        codes = torch.where(inside, codes.gather(1, source), 0)
        points = torch.where(inside, points.gather(1, source), 0)
        return cls(codes, points, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def signs(self) -> Tensor:
        """``1 - 2 * code`` on each path step and 0 past it, ``(V, L)`` float: the hierarchical softmax
        maximizes ``log sigmoid(sign * <h, syn1[point]>)`` over the steps of the predicted word.

        >>> HuffmanTree.from_counts(torch.tensor([3, 2, 1])).signs().tolist()
        [[1.0, 0.0], [-1.0, -1.0], [-1.0, 1.0]]
        """
        inside = torch.arange(self.codes.shape[1]) < self.lengths.unsqueeze(1)
        return (1.0 - 2.0 * self.codes.float()) * inside
