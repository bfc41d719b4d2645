"""Hierarchical softmax in the SGNS engine: one step against numpy ports of gensim's loops, output layout, Item2Vec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml

from recsys.data.frame import from_frame
from recsys.data.huffman import HuffmanTree
from recsys.errors import ConfigError
from recsys.models.item2vec import Item2Vec
from recsys.training.sgns import SGNS, SGNSEngine, _Targets, outputs, sgns_step

ROOT = Path(__file__).resolve().parents[2]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def tables(num_keys: int = 6, dim: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    w_in = torch.randn(num_keys + 1, dim, generator=gen).double()
    w_in[num_keys] = 0
    return w_in, torch.randn(num_keys - 1, dim, generator=gen).double()  # syn1: V - 1 inner nodes


def test_one_skip_gram_pair_equals_gensims_hs_update() -> None:
    """gensim's ``fast_sentence_sg_hs`` on (center 5, context 2): along the center's path, f = sigmoid(l1 . syn1[p]),
    g = (1 - code - f) * lr; syn1[p] += g * l1; l1 += sum of g * syn1[p] (the syn1 rows before their update)."""
    tree = HuffmanTree.from_counts(torch.tensor([9, 7, 4, 3, 2, 1]))
    w_in, syn1 = tables()
    center, context, lr = 5, 2, 0.3
    l1, out = w_in[context].numpy().copy(), syn1.numpy().copy()
    work = np.zeros_like(l1)
    for code, point in zip(*(t[center, : tree.lengths[center]].tolist() for t in (tree.codes, tree.points))):
        g = (1 - code - sigmoid(l1 @ out[point])) * lr
        work += g * out[point]
        out[point] += g * l1
    expected_in = w_in.numpy().copy()
    expected_in[context] += work
    assert int(tree.lengths[center]) == 4  # a path of several steps, both bits
    sgns_step(w_in, syn1, torch.tensor([[context]]), tree.points[[center]], tree.signs()[[center]].double(), torch.ones(1, 1).double(), lr, sg=True)
    np.testing.assert_allclose(w_in.numpy(), expected_in, rtol=1e-12)
    np.testing.assert_allclose(syn1.numpy(), out, rtol=1e-12)


def test_contexts_of_one_center_see_the_path_nodes_moved_by_the_ones_before_them() -> None:
    """gensim's skip-gram walks a center's window context after context, each moving the path nodes the next one reads.
    ``path_from`` keeps that to first order (exactly: node moves of earlier contexts in each context's error, scores
    from the step's start), which is far closer to gensim's sequential result than one simultaneous update."""
    tree = HuffmanTree.from_counts(torch.tensor([9, 7, 4, 3, 2, 1]))
    w_in, syn1 = tables()
    center, contexts, lr = 5, [0, 1, 3, 4], 0.2
    points, codes = (t[center, : tree.lengths[center]].numpy() for t in (tree.points, tree.codes))

    def gensim_window(first_order: bool) -> tuple[np.ndarray, np.ndarray]:
        x, out = w_in.numpy().copy(), syn1.numpy().copy()
        start = out.copy()
        for c in contexts:
            g = (1 - codes - sigmoid(out[points] @ x[c] if not first_order else start[points] @ x[c])) * lr  # (L,)
            work = g @ out[points]
            out[points] += np.outer(g, x[c])
            x[c] += work
        return x, out

    def ours(path_from: int | None) -> tuple[np.ndarray, np.ndarray]:
        a, b = w_in.clone(), syn1.clone()
        sgns_step(a, b, torch.tensor([contexts]), tree.points[[center]], tree.signs()[[center]].double(), torch.ones(1, 4).double(), lr,
                  sg=True, path_from=path_from)
        return a.numpy(), b.numpy()

    first_x, first_out = gensim_window(first_order=True)
    coupled_x, coupled_out = ours(path_from=0)
    np.testing.assert_allclose(coupled_x, first_x, rtol=1e-12)
    np.testing.assert_allclose(coupled_out, first_out, rtol=1e-12)
    sequential_x, _ = gensim_window(first_order=False)
    simultaneous_x, _ = ours(path_from=None)
    moved = np.abs(sequential_x - w_in.numpy()).max()
    assert np.abs(coupled_x - sequential_x).max() < 0.05 * moved < np.abs(simultaneous_x - sequential_x).max()


@pytest.mark.parametrize("cbow_mean", [1, 0])
def test_one_cbow_center_equals_gensims_hs_update(cbow_mean: int) -> None:
    """gensim's ``fast_sentence_cbow_hs``: h = mean (or sum) of the contexts; each context gets the whole error
    (with the sum: divided by the count); padding contexts get nothing."""
    tree = HuffmanTree.from_counts(torch.tensor([9, 7, 4, 3, 2, 1]))
    w_in, syn1 = tables()
    center, contexts, lr, pad = 4, [0, 1, 3], 0.3, 6
    x, out = w_in.numpy().copy(), syn1.numpy().copy()
    h = x[contexts].mean(0) if cbow_mean else x[contexts].sum(0)
    work = np.zeros_like(h)
    for code, point in zip(*(t[center, : tree.lengths[center]].tolist() for t in (tree.codes, tree.points))):
        g = (1 - code - sigmoid(h @ out[point])) * lr
        work += g * out[point]
        out[point] += g * h
    if not cbow_mean:
        work /= len(contexts)
    x[contexts] += work
    valid = torch.tensor([[1.0, 1.0, 1.0, 0.0]]).double()
    sgns_step(w_in, syn1, torch.tensor([contexts + [pad]]), tree.points[[center]], tree.signs()[[center]].double(), valid, lr,
              sg=False, cbow_mean=bool(cbow_mean))
    np.testing.assert_allclose(w_in.numpy(), x, rtol=1e-12)
    np.testing.assert_allclose(syn1.numpy(), out, rtol=1e-12)
    assert w_in[pad].abs().max() == 0


def test_hs_and_negative_together_add_both_errors_as_word2vec_c() -> None:
    """With ``hs=1, negative=k`` the context's error sums the path's and the noise terms' (word2vec.c's neu1e), every
    term from the same input vector; one output table holds syn1neg (rows 0..V-1), then syn1 (rows V..2V-2)."""
    num_keys, lr = 6, 0.2
    tree = HuffmanTree.from_counts(torch.tensor([9, 7, 4, 3, 2, 1]))
    w_in, syn1 = tables()
    syn1neg = torch.randn(num_keys, 3, generator=torch.Generator().manual_seed(1)).double()
    center, context, noise = 3, 1, [0, 3, 5]  # noise 3 equals the center: skipped
    l1, neg, out = w_in[context].numpy().copy(), syn1neg.numpy().copy(), syn1.numpy().copy()
    work = np.zeros_like(l1)
    for code, point in zip(*(t[center, : tree.lengths[center]].tolist() for t in (tree.codes, tree.points))):
        g = (1 - code - sigmoid(l1 @ out[point])) * lr
        work += g * out[point]
        out[point] += g * l1
    for target, label in [(center, 1)] + [(k, 0) for k in noise if k != center]:
        g = (label - sigmoid(l1 @ neg[target])) * lr
        work += g * neg[target]
        neg[target] += g * l1
    expected_in = w_in.numpy().copy()
    expected_in[context] += work

    targets = _Targets.build(torch.tensor([9, 7, 4, 3, 2, 1]), 3, 0.75, tree, torch.device("cpu"))
    assert targets.points.min() >= num_keys  # path rows follow the negative table
    rows, signs = outputs(torch.tensor([center]), torch.tensor([noise]))
    out_rows = torch.cat([rows, targets.points[[center]]], 1)
    weight = torch.cat([signs, targets.signs[[center]]], 1).double()
    table = torch.cat([syn1neg, syn1])
    sgns_step(w_in, table, torch.tensor([[context]]), out_rows, weight, torch.ones(1, 1).double(), lr, sg=True)
    np.testing.assert_allclose(w_in.numpy(), expected_in, rtol=1e-12)
    np.testing.assert_allclose(table[:num_keys].numpy(), neg, rtol=1e-12)
    np.testing.assert_allclose(table[num_keys:].numpy(), out, rtol=1e-12)


def test_targets_draw_noise_then_path_and_batches_take_their_longest_path() -> None:
    tree = HuffmanTree.from_counts(torch.tensor([9, 7, 4, 3, 2, 1]))
    targets = _Targets.build(torch.tensor([9, 7, 4, 3, 2, 1]), 2, 0.75, tree, torch.device("cpu"))
    center = torch.tensor([0, 5, 1, 0])
    out, weight, depth = targets.draw(center, torch.Generator().manual_seed(0))
    assert out.shape == weight.shape == (4, 3 + int(tree.lengths.max()))
    assert out[:, 0].tolist() == center.tolist() and torch.equal(out[:, 3:], tree.points[center] + 6)
    assert depth.tolist() == tree.lengths[center].tolist()
    assert targets.columns(depth, size=2) == [3 + max(tree.lengths[[0, 5]].tolist()), 3 + max(tree.lengths[[1, 0]].tolist())]
    hs_only = _Targets.build(torch.tensor([9, 7, 4, 3, 2, 1]), 0, 0.75, tree, torch.device("cpu"))
    out, _, depth = hs_only.draw(center, torch.Generator().manual_seed(0))
    assert torch.equal(out, tree.points[center]) and hs_only.columns(depth, size=4) == [int(depth.max())]
    assert (targets.path_from, hs_only.path_from) == (3, 0)
    assert _Targets.build(torch.tensor([2, 1]), 5, 0.75, None, torch.device("cpu")).path_from is None


def test_train_returns_syn1_and_no_negative_table_with_hs_only() -> None:
    counts, tokens = torch.tensor([3, 2, 1]), torch.tensor([0, 1, 0, 2, 0, 1])
    result = SGNS(vector_size=4, window=2, negative=0, hs=1, epochs=2, sample=0.0).train(
        counts, tokens, torch.tensor([0, 3, 6]), workers=1, device=torch.device("cpu"), seed=0)
    assert result.syn1.shape == (2, 4) and result.syn1neg.shape == (0, 4)
    assert result.syn1.abs().sum() > 0 and result.tree is not None
    single = SGNS(vector_size=4, negative=0, hs=1, epochs=1, sample=0.0).train(
        torch.tensor([3]), torch.tensor([0, 0, 0]), torch.tensor([0, 3]), workers=1, device=torch.device("cpu"), seed=0)
    assert single.syn1.shape == (0, 4)  # one word: no inner node, nothing to train, no error


@pytest.mark.parametrize("settings", [dict(hs=0, negative=0), dict(hs=2), dict(negative=-1), dict(cbow_mean=2)])
def test_invalid_objectives_are_config_errors(settings: dict) -> None:
    with pytest.raises(ConfigError):
        SGNS(**settings).check()


@pytest.mark.parametrize("settings", [dict(hs=0, negative=0), dict(hs=2), dict(negative=-1)])
def test_item2vec_rejects_invalid_objectives_when_built(settings: dict) -> None:
    with pytest.raises(ConfigError, match="model.module.hs=1"):
        Item2Vec(num_items=3, **settings)


def community_data(num_users: int = 200, size: int = 12, length: int = 10, seed: int = 0):
    """Each user browses one of two disjoint item communities (item ids 100.. and 200..), in time order."""
    gen = torch.Generator().manual_seed(seed)
    side = torch.randint(2, (num_users, 1), generator=gen)
    items = torch.randint(size, (num_users, length), generator=gen) + 100 + 100 * side
    users = torch.arange(num_users).repeat_interleave(length)
    times = torch.arange(length).repeat(num_users)
    return from_frame(pl.DataFrame({"user": users.numpy(), "item": items.flatten().numpy(), "timestamp": times.numpy()}))


@pytest.mark.parametrize("kernel", ["numba", "torch"])  # the compiled loop (CPU default with numba installed), the vectorized steps
@pytest.mark.parametrize("sg", [1, 0])
def test_item2vec_with_hs_only_separates_communities(sg: int, kernel: str) -> None:
    if kernel == "numba":
        pytest.importorskip("numba", reason="the compiled SGNS loop needs numba (pip install numba)")
    data = community_data()
    model = Item2Vec(num_items=data.num_items, vector_size=16, window=3, negative=0, hs=1, sg=sg, sample=0.0, epochs=6)
    SGNSEngine(workers=1, kernel=kernel).fit(model, data, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), progress=False)
    community = torch.tensor(data.items.ids.to_list()) >= 200  # (N,)
    unit = torch.nn.functional.normalize(model.item_vectors, dim=1)
    top = (unit @ unit.T).fill_diagonal_(-2).topk(5, dim=1).indices  # (N, 5)
    assert bool((community[top] == community.unsqueeze(1)).all())


def test_item2vec_config_has_the_new_keys_as_constructor_arguments() -> None:
    module = yaml.safe_load((ROOT / "conf" / "model" / "item2vec.yaml").read_text())["module"]
    assert module["hs"] == 0 and module["cbow_mean"] == 1
    import inspect

    params = inspect.signature(Item2Vec).parameters
    assert set(module) - {"_target_"} <= set(params)
    assert params["hs"].default == module["hs"] and params["cbow_mean"].default == module["cbow_mean"]
