"""Huffman tree of hierarchical softmax: a hand-built tree, gensim's codes and points, optimality, edge cases."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
import torch

from recsys.data.huffman import HuffmanTree
from recsys.errors import DataError


def paths(tree: HuffmanTree) -> list[tuple[list[int], list[int]]]:
    return [(tree.codes[w, :n].tolist(), tree.points[w, :n].tolist()) for w, n in enumerate(tree.lengths.tolist())]


def test_hand_built_tree() -> None:
    """counts [5, 4, 2, 1]: merge 1+2 -> node 0 (=3), then 3+4 -> node 1 (=7), then 5+7 -> root 2 (=12).

    First popped child on bit 0: word 3 (1) and word 2 (2) under node 0, node 0 and word 1 under node 1,
    word 0 and node 1 under the root.
    """
    tree = HuffmanTree.from_counts(torch.tensor([5, 4, 2, 1]))
    assert paths(tree) == [([0], [2]), ([1, 1], [2, 1]), ([1, 0, 1], [2, 1, 0]), ([1, 0, 0], [2, 1, 0])]
    assert tree.codes.shape == tree.points.shape == (4, 3)
    assert tree.signs().tolist() == [[1, 0, 0], [-1, -1, 0], [-1, 1, -1], [-1, 1, 1]]


def gensim_paths(counts: list[int]) -> tuple[torch.Tensor, list[tuple[list[int], list[int]]]]:
    """gensim's vocabulary counts (its index order) and its codes/points for a corpus with these word counts."""
    gensim = pytest.importorskip("gensim.models")
    corpus = [[f"w{i}"] * c for i, c in enumerate(counts)]
    model = gensim.Word2Vec(vector_size=4, min_count=1, hs=1, negative=0, sample=0)
    model.build_vocab(corpus)
    wv = model.wv
    vocab_counts = torch.tensor([wv.get_vecattr(key, "count") for key in wv.index_to_key])
    return vocab_counts, [(wv.get_vecattr(key, "code").tolist(), wv.get_vecattr(key, "point").tolist()) for key in wv.index_to_key]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_codes_and_points_equal_gensims_with_many_ties(seed: int) -> None:
    counts = np.random.default_rng(seed).integers(1, 9, size=80).tolist()  # 80 words, 8 distinct counts: ties everywhere
    vocab_counts, expected = gensim_paths(counts)
    assert paths(HuffmanTree.from_counts(vocab_counts)) == expected


def test_codes_and_points_equal_gensims_on_zipf_counts() -> None:
    counts = [int(1000 / rank) for rank in range(1, 301)]
    vocab_counts, expected = gensim_paths(counts)
    tree = HuffmanTree.from_counts(vocab_counts)
    assert paths(tree) == expected
    assert int(tree.lengths[0]) < int(tree.lengths[-1])  # frequent words get short codes


def test_tree_is_an_optimal_prefix_code() -> None:
    counts = torch.tensor([40, 30, 30, 12, 7, 7, 3, 1, 1])
    tree = HuffmanTree.from_counts(counts)
    heap = counts.tolist()  # Huffman's cost: the sum of all merged weights
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    assert int((counts * tree.lengths).sum()) == cost
    codes = ["".join(map(str, code)) for code, _ in paths(tree)]
    assert not any(a != b and b.startswith(a) for a in codes for b in codes)  # prefix-free
    assert bool((tree.points[:, 0] == len(counts) - 2).all())  # every path starts at the root
    assert int(tree.points.max()) <= len(counts) - 2


def test_one_word_has_an_empty_path_and_none_is_an_error() -> None:
    tree = HuffmanTree.from_counts(torch.tensor([3]))
    assert tree.codes.shape == (1, 0) and tree.lengths.tolist() == [0]
    with pytest.raises(DataError, match="at least one word"):
        HuffmanTree.from_counts(torch.tensor([], dtype=torch.long))
