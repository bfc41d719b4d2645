"""Each rank reads only its shard of an interaction file; vocabularies agree; DDP keeps the ranks in step."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torch.distributed as dist

from recsys.data import PairwiseBatches, Vocabulary
from recsys.data.shards import agree_vocabulary, read_shard, shard_of
from recsys.errors import ConfigError
from recsys.models import BPRMF
from recsys.training import Trainer
from recsys.training.distributed import RankLocal, shard_batches, wrap_model

LR = 0.5


def _write(path: Path, rows: int = 400, users: int = 40, items: int = 25) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({
        "user": rng.integers(0, users, rows) * 11 + 3,  # sparse original ids
        "item": rng.integers(0, items, rows) * 7 + 1,
        "rating": rng.integers(1, 6, rows).astype(np.float32),
        "timestamp": np.arange(rows, dtype=np.int64),
    }).unique(["user", "item"], keep="first", maintain_order=True)
    frame.write_parquet(path) if path.suffix == ".parquet" else frame.write_csv(path)
    return frame


def _pairs(data) -> set[tuple[int, int]]:
    users = data.users.to_original(data.frame["user"].to_numpy())
    items = data.items.to_original(data.frame["item"].to_numpy())
    return set(zip(users, items))


def test_shard_of_puts_each_user_on_one_rank_and_covers_all_rows() -> None:
    frame = pl.DataFrame({"user": np.repeat(np.arange(1000), 3)})
    shards = frame.with_columns(shard_of("user", 4))
    assert shards.group_by("user").agg(pl.col("shard").n_unique())["shard"].max() == 1
    sizes = shards["shard"].value_counts()["count"].to_list()
    assert sorted(shards["shard"].unique().to_list()) == [0, 1, 2, 3] and min(sizes) > 0.8 * 750  # balanced
    assert pl.Series(["a", "b"]).to_frame("user").select(shard_of("user", 2))["shard"].is_between(0, 1).all()
    with pytest.raises(ConfigError):
        shard_of("user", 0)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_read_shard_reads_only_its_users_with_given_vocabularies(tmp_path: Path, suffix: str) -> None:
    frame = _write(tmp_path / f"rows{suffix}")
    users, items = Vocabulary.from_values(frame["user"]), Vocabulary.from_values(frame["item"])
    parts = [read_shard(tmp_path / f"rows{suffix}", rank=r, world_size=3, users=users, items=items) for r in range(3)]
    seen = [_pairs(p) for p in parts]
    assert all(seen) and sum(len(s) for s in seen) == frame.height
    assert set().union(*seen) == set(zip(frame["user"].to_list(), frame["item"].to_list()))
    user_sets = [set(p.users.to_original(p.frame["user"].to_numpy())) for p in parts]
    assert not (user_sets[0] & user_sets[1]) and not (user_sets[1] & user_sets[2])
    assert all(p.num_users == len(users) and p.num_items == len(items) for p in parts)
    assert parts[0].frame["rating"].dtype == pl.Float32 and "timestamp" in parts[0].frame.columns


def test_read_shard_outside_a_process_group(tmp_path: Path) -> None:
    frame = _write(tmp_path / "rows.csv")
    whole = read_shard(tmp_path / "rows.csv")  # rank 0 of 1: everything, vocabulary from the rows
    assert whole.num_interactions == frame.height and whole.users.ids.to_list() == sorted(frame["user"].unique())
    with pytest.raises(ConfigError, match="agree on vocabularies"):
        read_shard(tmp_path / "rows.csv", rank=0, world_size=2)
    with pytest.raises(ConfigError):
        read_shard(tmp_path / "rows.csv", rank=2, world_size=2)
    assert agree_vocabulary(pl.Series([3, 1, None, 3])).ids.to_list() == [1, 3]


def test_rank_local_batches_are_not_split_again() -> None:
    local = RankLocal([1, 2, 3])
    assert shard_batches(local) is local and list(local) == [1, 2, 3]
    local.steps = 2  # as if the smallest shard gave two batches
    assert len(local) == 2 and list(local) == [1, 2]


def _worker(rank: int, world_size: int, path: str, out: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        data = read_shard(path)  # rank and world size from the process group; vocabularies all-gathered
        batches = shard_batches(RankLocal(PairwiseBatches(data, batch_size=16, seed=rank)))
        torch.manual_seed(rank)  # different initial weights per rank: DDP broadcasts rank 0's
        model = BPRMF(data.num_users, data.num_items, embedding_dim=4)
        own = model.user_embedding.weight.detach().clone()
        net = wrap_model(model, torch.device("cpu"))
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        first = next(iter(batches))
        net(first).backward()
        optimizer.step()
        after_one = {k: v.clone() for k, v in model.state_dict().items()}
        Trainer(epochs=1, device="cpu", progress=False, patience=None, tensorboard=False).fit(
            model, batches, functools.partial(torch.optim.Adam, lr=0.01))
        torch.save({
            "pairs": sorted(_pairs(data)), "users": data.users.ids.to_list(), "items": data.items.ids.to_list(),
            "steps": len(batches), "own": own, "first": first, "initial": initial, "after_one": after_one,
            "final": model.state_dict(),
        }, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_read_their_shards_and_train_in_step(tmp_path: Path) -> None:
    frame = _write(tmp_path / "rows.parquet")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_worker, args=(2, str(tmp_path / "rows.parquet"), str(tmp_path), port), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]

    # each rank saw exactly its hash shard of the rows, never the whole file
    expected = frame.with_columns(shard_of("user", 2))
    for r, result in enumerate(ranks):
        mine = expected.filter(pl.col("shard") == r)
        assert set(result["pairs"]) == set(zip(mine["user"].to_list(), mine["item"].to_list()))
        assert 0 < len(result["pairs"]) < frame.height
    # one vocabulary everywhere: the whole file's ids, though no rank read them all
    assert ranks[0]["users"] == ranks[1]["users"] == sorted(frame["user"].unique().to_list())
    assert ranks[0]["items"] == ranks[1]["items"] == sorted(frame["item"].unique().to_list())
    assert ranks[0]["steps"] == ranks[1]["steps"] > 0  # the smaller shard's batch count

    # one DDP step == one step on the mean of both ranks' gradients, from rank 0's weights
    initial = ranks[0]["initial"]
    assert not torch.equal(ranks[1]["own"], initial["user_embedding.weight"])  # rank 1 started elsewhere
    assert all(torch.equal(initial[k], ranks[1]["initial"][k]) for k in initial)  # DDP broadcast rank 0's
    grads = []
    for result in ranks:
        reference = BPRMF(len(result["users"]), len(result["items"]), embedding_dim=4)
        reference.load_state_dict(initial)
        reference.loss(result["first"]).backward()
        grads.append({n: p.grad for n, p in reference.named_parameters()})
    for name, value in initial.items():
        expected_step = value - LR * (grads[0][name] + grads[1][name]) / 2
        torch.testing.assert_close(ranks[0]["after_one"][name], expected_step, rtol=1e-5, atol=1e-6)
        assert torch.equal(ranks[0]["after_one"][name], ranks[1]["after_one"][name])
        assert torch.equal(ranks[0]["final"][name], ranks[1]["final"][name])
        assert not torch.equal(ranks[0]["final"][name], ranks[0]["after_one"][name])


# --- embedding tables for TorchRec's model-parallel sharding --------------------------------------------------


def _emulated_ebc(tables, state: dict[str, torch.Tensor], kjt: dict, batch: int) -> torch.Tensor:
    """What TorchRec's unsharded EmbeddingBagCollection computes: one nn.EmbeddingBag(include_last_offset=True)
    per table over its key's slice of the KJT, outputs concatenated -> (B, F * D)."""
    lengths = kjt["lengths"].view(len(tables), batch)
    starts = torch.cat([torch.zeros(1, dtype=torch.long), lengths.sum(1).cumsum(0)])
    out = []
    for k, table in enumerate(tables):
        bag = torch.nn.EmbeddingBag(table.num_embeddings, table.embedding_dim, mode=table.pooling.lower(),
                                    include_last_offset=True)
        bag.load_state_dict({"weight": state[f"embedding_bags.{table.name}.weight"]})
        values = kjt["values"][starts[k]:starts[k + 1]]
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths[k].cumsum(0)])
        weights = None if kjt["weights"] is None else kjt["weights"][starts[k]:starts[k + 1]]
        out.append(bag(values, offsets, per_sample_weights=weights))
    return torch.cat(out, 1)


@pytest.mark.parametrize("weighted", [False, True])
def test_torchrec_mapping_reproduces_the_collection(weighted: bool) -> None:
    from recsys.embeddings import EmbeddingField
    from recsys.embeddings.collection import EmbeddingCollection
    from recsys.embeddings.jagged import KeyedJagged
    from recsys.embeddings.torchrec import ebc_state_dict, kjt_inputs, table_configs

    fields = [
        EmbeddingField("user", 6, 4),
        EmbeddingField("city", 5, 4, oov_row=True),
        EmbeddingField("tags", 7, 4, pooling="mean", padding_idx=0, weighted=weighted),
        EmbeddingField("query", 50, 4, pooling="sum", hashing=True, weighted=weighted),
    ]
    collection = EmbeddingCollection(fields, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[1, 4], [5, 9], [0, 2]])  # city 9 is out of vocabulary
    lists = {"tags": [[1, 0, 3], [0], [2, 2]], "query": [[10**12, -5], [], [7]]}
    weights = {"tags": [[0.5, 9.0, 2.0], [1.0], [1.0, 3.0]], "query": [[2.0, 1.0], [], [0.5]]} if weighted else None
    bags = KeyedJagged.from_lists(lists, weights)
    tables = table_configs(fields)
    assert [(t.name, t.num_embeddings, t.pooling) for t in tables] == [
        ("user", 6, "SUM"), ("city", 6, "SUM"), ("tags", 7, "SUM" if weighted else "MEAN"), ("query", 50, "SUM")]
    kjt = kjt_inputs(collection, ids, bags)
    assert kjt["keys"] == ["user", "city", "tags", "query"]
    assert kjt["lengths"].tolist() == [1, 1, 1, 1, 1, 1, 2, 0, 2, 2, 0, 1]  # the padding values dropped
    state = ebc_state_dict(collection)
    assert state["embedding_bags.city.weight"].shape == (6, 4)
    expected = collection(ids, bags).reshape(3, -1)  # (B, F * D)
    torch.testing.assert_close(_emulated_ebc(tables, state, kjt, batch=3), expected)


def test_torchrec_mapping_refuses_what_one_collection_cannot_be() -> None:
    from recsys.embeddings import EmbeddingField
    from recsys.embeddings.torchrec import table_configs

    with pytest.raises(ConfigError, match="weighted"):
        table_configs([EmbeddingField("a", 3, 2, pooling="sum", weighted=True), EmbeddingField("b", 3, 2, pooling="sum")])
    assert table_configs([EmbeddingField("a", 3, 2)], dtype=torch.float16)[0].data_type == "FP16"


def test_to_torchrec_builds_the_collection_or_says_why_not() -> None:
    from recsys.embeddings import EmbeddingField
    from recsys.embeddings.collection import EmbeddingCollection
    from recsys.embeddings.jagged import KeyedJagged
    from recsys.embeddings.torchrec import kjt_inputs, to_torchrec

    fields = [EmbeddingField("user", 6, 4), EmbeddingField("tags", 7, 4, pooling="mean")]
    collection = EmbeddingCollection(fields, generator=torch.Generator().manual_seed(0))
    try:
        from torchrec import KeyedJaggedTensor
    except (ImportError, OSError):  # absent, or fbgemm_gpu built for another torch (as with torch 2.13 here)
        with pytest.raises(ConfigError, match="torchrec"):
            to_torchrec(collection)
        return
    ids, bags = torch.tensor([[1], [5]]), KeyedJagged.from_lists({"tags": [[1, 3], [2]]})
    out = to_torchrec(collection)(KeyedJaggedTensor(**kjt_inputs(collection, ids, bags))).values()
    torch.testing.assert_close(out, collection(ids, bags).reshape(2, -1))
