"""DeepFM under 2-process gloo DistributedDataParallel == one process on the full batch.

Sparse table gradients (one fused ``embedding_bag`` table) and ``CombinedOptimizer`` (dense Adam +
sparse RowWiseAdagrad) go through DDP's all-reduce; each rank takes half of every global batch
(``FeatureBatches.shard``), so the run is the same synchronous SGD as one process with the full batch.
"""

from __future__ import annotations

import os
import socket
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from recsys.data.ctr_batches import FeatureBatches
from recsys.data.fields import EncodedFeatures
from recsys.embeddings.config import EmbeddingField
from recsys.embeddings.optimizer import CombinedOptimizer
from recsys.embeddings.sparse_optim import RowWiseAdagrad
from recsys.models.deepfm import DeepFM
from recsys.training.trainer import Trainer

ROWS, GLOBAL_BATCH, EPOCHS = 96, 16, 2  # 6 steps per epoch; 12 steps in all


def _data() -> tuple[EncodedFeatures, torch.Tensor]:
    """Two single-valued fields (user, item) and one mean-pooled bag field (genres, 0-3 values per row)."""
    g = torch.Generator().manual_seed(3)
    ids = torch.stack([torch.randint(0, 12, (ROWS,), generator=g), torch.randint(0, 20, (ROWS,), generator=g)], 1)
    lengths = torch.randint(0, 4, (1, ROWS), generator=g)
    values = torch.randint(0, 6, (int(lengths.sum()),), generator=g)
    labels = (torch.rand(ROWS, generator=g) < 0.4 + 0.02 * ids[:, 0]).float()
    return EncodedFeatures(ids, values, lengths, torch.zeros(ROWS, 0)), labels


def _model() -> DeepFM:
    with torch.random.fork_rng(devices=[]):  # the caller seeds the initial weights; the global RNG state is restored
        torch.manual_seed(0)
        model = DeepFM(embedding_dim=4, hidden_dims=(16, 8))
        model.build([EmbeddingField("user", 12, 4), EmbeddingField("item", 20, 4),
                     EmbeddingField("genres", 6, 4, pooling="mean")])
    return model


def _train(batch_size: int) -> tuple[dict[str, torch.Tensor], int]:
    """Weights right after the last optimizer step (before the Trainer's closing broadcast from rank 0,
    so each rank's own updates are compared) and the number of steps taken."""
    encoded, labels = _data()
    model = _model()
    batches = FeatureBatches(encoded, labels, batch_size=batch_size, seed=5)
    snapshots: list[dict[str, torch.Tensor]] = []

    def optimizer(params: object) -> CombinedOptimizer:
        combined = CombinedOptimizer(params, dense=partial(torch.optim.Adam, lr=1e-2),
                                     sparse=partial(RowWiseAdagrad, lr=0.1))
        combined.optimizers[-1].register_step_post_hook(  # the last part to step: the weights are final
            lambda *_: snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()}))
        return combined

    Trainer(epochs=EPOCHS, device="cpu", patience=None, progress=False, tensorboard=False).fit(model, batches, optimizer)
    return snapshots[-1], len(snapshots)


def _rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world)})
    torch.set_num_threads(1)
    from recsys.training.distributed import destroy_distributed, is_distributed

    state, steps = _train(GLOBAL_BATCH // world)  # the Trainer joins the group and shards the batches
    assert is_distributed()
    torch.save({"state": state, "steps": steps}, Path(out) / f"rank{rank}.pt")
    destroy_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_deepfm_ddp_two_ranks_equal_one_process_full_batch(tmp_path: Path) -> None:
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    loaded = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single, steps = _train(GLOBAL_BATCH)
    assert steps == EPOCHS * ROWS // GLOBAL_BATCH == loaded[0]["steps"] == loaded[1]["steps"]

    initial = _model().state_dict()
    ranks = [r["state"] for r in loaded]
    assert set(ranks[0]) == set(single) and any("embeddings" in name for name in single)
    for name, reference in single.items():
        assert not torch.equal(reference, initial[name]), f"{name}: not trained"
        for r, state in enumerate(ranks):
            torch.testing.assert_close(state[name], reference, rtol=0, atol=1e-5, msg=f"{name}: rank {r} != single process")
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=1e-7, msg=f"{name}: ranks differ")
