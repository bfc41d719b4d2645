"""Data-parallel training under ``torchrun``: process group, model wrapping, batch sharding.

Batches are split between ranks here (:func:`shard_batches`), or each rank reads only its own shard of the
data (:func:`recsys.data.shards.read_shard`) and wraps its batches in :class:`RankLocal`.

Nothing here changes model code: :class:`~torch.nn.parallel.DistributedDataParallel` calls
``Recommender.forward``, which is the loss, so its gradient hooks run.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


def _env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    """True inside an initialized process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, the process that validates, logs and saves.

    >>> is_main_process()
    True
    """
    return rank() == 0


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group described by ``torchrun``'s environment when ``WORLD_SIZE > 1``.

    Uses nccl on CUDA (one GPU per process, taken from ``LOCAL_RANK``) and gloo otherwise;
    returns the device this process trains on. Does nothing when already initialized or alone.
    """
    if device.type == "cuda" and "LOCAL_RANK" in os.environ and _env_world_size() > 1:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if _env_world_size() > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


# sparse tables up to this many elements are all-reduced as one dense tensor: a few hundred microseconds,
# where gloo's sparse all-reduce (an all-gather of indices and values) takes milliseconds per step
_DENSE_SYNC_MAX_ELEMENTS = 2**20


class _DataParallel(nn.parallel.DistributedDataParallel):
    """DistributedDataParallel that also handles the sparse gradients of parameters marked sparse
    (:func:`recsys.embeddings.sparse_optim.mark_sparse`: fused tables calling ``embedding_bag(sparse=True)``).

    DDP only recognizes ``nn.Embedding`` / ``nn.EmbeddingBag(sparse=True)`` by module type; any other
    sparse gradient would be copied into a dense bucket and fail ("Cannot access storage of
    SparseTensorImpl"). Large marked tables take DDP's own sparse path (all-reduced, averaged). Small ones
    (at most ``_DENSE_SYNC_MAX_ELEMENTS``) are left out of DDP: once a step's gradient has accumulated, it is
    summed per row, all-reduced as one dense tensor (plus a touched flag per row) and averaged, and becomes a
    coalesced sparse gradient of the rows any rank touched, as a single process would have produced.
    """

    def __init__(self, module: nn.Module, **kwargs: Any) -> None:
        from recsys.embeddings.sparse_optim import is_sparse_param

        small = {name: p for name, p in module.named_parameters()
                 if p.requires_grad and is_sparse_param(p) and p.numel() <= _DENSE_SYNC_MAX_ELEMENTS}
        self._set_params_and_buffers_to_ignore_for_model(module, list(small))
        super().__init__(module, **kwargs)
        with torch.no_grad():
            for param in small.values():  # DDP syncs the initial weights of the parameters it owns only
                dist.broadcast(param, src=0)
                param.register_post_accumulate_grad_hook(_all_reduce_rows)

    def _build_params_for_reducer(self):  # type: ignore[no-untyped-def]
        from recsys.embeddings.sparse_optim import is_sparse_param

        parameters, expect_sparse = super()._build_params_for_reducer()
        return parameters, [sparse or is_sparse_param(p) for p, sparse in zip(parameters, expect_sparse)]


def _all_reduce_rows(param: Tensor) -> None:
    """Replace ``param.grad`` by its mean over the ranks, as a coalesced sparse gradient of the touched rows."""
    from recsys.embeddings.sparse_optim import summed_rows

    with torch.no_grad():
        sums, touched = summed_rows(param.grad)  # (R, D) float32, (R,)
        summed = torch.cat([sums, touched.float().unsqueeze(1)], 1)  # last column: touched here
        dist.all_reduce(summed)
        touched = summed[:, -1].nonzero().squeeze(1)  # rows any rank touched
        values = summed.index_select(0, touched)[:, :-1].div_(world_size()).to(param.dtype)
        param.grad = torch.sparse_coo_tensor(touched.unsqueeze(0), values, param.shape, is_coalesced=True)


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel when distributed, else ``model`` itself."""
    if not is_distributed():
        return model
    device_ids = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else None
    )
    # no per-step buffer broadcast: rank 0 evaluates and saves with its own buffers either way, and the
    # Trainer copies rank 0's module to every rank at the end of fit
    return _DataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class EveryNth:
    """Batches ``rank, rank + n, rank + 2n, ...`` of ``batches``, dropping an incomplete last round
    so every rank takes the same number of steps (uneven counts would hang the gradient all-reduce).

    >>> list(EveryNth(range(7), rank=1, world_size=3))
    [1, 4]
    """

    def __init__(self, batches: Iterable[Any], rank: int, world_size: int) -> None:
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches) // self.world_size  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        for index, batch in enumerate(self.batches):
            if index % self.world_size == self.rank:
                mine = batch
            if index % self.world_size == self.world_size - 1:
                yield mine


class RankLocal:
    """Batches of data this rank already holds alone (its shard, e.g. :func:`recsys.data.shards.read_shard`):
    :func:`shard_batches` does not split them again. Shards differ in size, so every rank takes as many
    batches per epoch as the smallest shard gives (an all-reduce of the counts when sharded); uneven step
    counts would hang the gradient all-reduce. The batches left over differ per epoch when ``batches``
    shuffles.

    >>> local = RankLocal([10, 20, 30])
    >>> local.shard(rank=0, world_size=1) is local, len(local), list(local)
    (True, 3, [10, 20, 30])
    """

    def __init__(self, batches: Iterable[Any]) -> None:
        self.batches = batches
        self.steps: int | None = None

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def shard(self, rank: int, world_size: int) -> RankLocal:
        steps = len(self.batches)  # type: ignore[arg-type]
        if world_size > 1 and dist.is_available() and dist.is_initialized():
            count = torch.tensor([steps], dtype=torch.long)
            if dist.get_backend() == "nccl":
                count = count.cuda()
            dist.all_reduce(count, op=dist.ReduceOp.MIN)
            steps = int(count.item())
        self.steps = steps
        return self

    def __len__(self) -> int:
        return len(self.batches) if self.steps is None else self.steps  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.batches) if self.steps is None else itertools.islice(self.batches, self.steps)


def shard_batches(batches: Iterable[Any]) -> Iterable[Any]:
    """This rank's share of ``batches``: ``batches.shard(rank, world_size)`` when it has one
    (its return value, or ``batches`` itself if it shards in place), else :class:`EveryNth`."""
    if not is_distributed():
        return batches
    if hasattr(batches, "shard"):
        sharded = batches.shard(rank(), world_size())
        return batches if sharded is None else sharded
    return EveryNth(batches, rank(), world_size())


def broadcast_object(value: Any, src: int = 0) -> Any:
    """``value`` as held by rank ``src``, on every rank (a no-op when not distributed)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``src`` to all ranks, in place."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=src)


def mean_across_ranks(value: float, device: torch.device) -> float:
    """The mean of ``value`` over all ranks (``value`` itself when not distributed)."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.item() / world_size()


def destroy_distributed() -> None:
    """Leave the process group (after a barrier, so no rank tears down links another still uses).

    For entry points to call at exit; a no-op when no group is initialized.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
