"""RecBole's SASRec as a peer: trained by RecBole 1.2.1, scored by our evaluator exactly as RecBole scores it.

:class:`RecBoleSASRec` (the engine, ``conf/model/peer/recbole_sasrec.yaml``) writes the run's training
interactions as RecBole atomic files, trains ``recbole.model.sequential_recommender.SASRec`` (CE loss over all
items, every prefix of every training sequence is one example, RecBole's own ``Trainer``, no RecBole-side
validation) and copies its weights into :class:`RecBoleSASRecModel`, the container. The container is RecBole's
forward re-read top to bottom (item + position embedding, LayerNorm, dropout, post-LN Transformer layers with
RecBole's attention and feed-forward, the output at the last real position, ``scores = h @ items.T``) with its
parameter names, so ``full_sort_predict`` and the container agree to float rounding (tested); it scores, saves
(safetensors) and loads like any run, with no RecBole import.

Layouts: RecBole right-pads sequences and counts positions from the first item; ours are left-padded
(``index + 1``, 0 = padding). The container turns each row into RecBole's layout before encoding. RecBole maps
item tokens to its own ids; the engine writes our item indices as tokens and maps its rows back, so container
row ``i + 1`` is our item ``i``. Items RecBole never saw (not in the training data) score ``-inf`` (a miss).

RecBole 1.2.1 under numpy 2 / torch 2.13 / pandas 3 needs these workarounds, all applied only while
:meth:`RecBoleSASRec.fit` (and the sequential speed bench) runs and undone after (:func:`recbole_runtime`); site-packages stay untouched:

1. ``Config.compatibility_settings`` reads ``np.float_``, ``np.complex_``, ``np.unicode_`` (removed in numpy 2)
   and ``recbole.data.interaction`` reads ``np.float``: the missing aliases are set, then removed again.
2. ``recbole.utils.utils`` imports ``torch.utils.tensorboard`` (needs the ``tensorboard`` package): without it a
   stub module stands in during the import; the Trainer's ``get_tensorboard`` becomes a no-op writer either way
   (RecBole would otherwise write ``log_tensorboard/`` into the working directory).
3. ``Config`` parses ``sys.argv`` as RecBole ``--key=value`` options and writes ``CUDA_VISIBLE_DEVICES``: it sees
   an empty command line and its ``_init_device`` is replaced by one that takes the engine's device.
4. Warnings RecBole triggers on current versions are silenced inside the fit: torch's ``GradScaler`` deprecation,
   "non-writable NumPy array" (pandas 3 returns read-only arrays; RecBole copies them into new tensors) and
   pandas 3's ``ChainedAssignmentError`` from ``Dataset._fill_nan`` (its in-place ``fillna`` no longer writes
   under copy-on-write; harmless here: the files the engine writes have no missing values), pandas 3.1's
   deprecation of ``inplace=`` and numpy 2's of ``__array_wrap__`` without ``context``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import tempfile
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import Tensor, nn

from recsys.data.ids import ITEM_SHIFT, PADDING_INDEX
from recsys.data.interactions import Interactions
from recsys.errors import ConfigError, DataError
from recsys.models.base import Recommender
from recsys.models.sasrec import SequentialRecommender, check_sizes
from recsys.training.threads import resolve_threads, torch_threads

__all__ = ["RecBoleSASRec", "RecBoleSASRecModel"]

log = logging.getLogger(__name__)

_ACTIVATIONS = {  # RecBole's FeedForward.get_hidden_act (its gelu is the erf form)
    "gelu": lambda x: x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))),
    "relu": torch.relu,
    "swish": lambda x: x * torch.sigmoid(x),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


# --- the container: RecBole's SASRec forward (recbole/model/layers.py), parameter names as RecBole's ------
class _Attention(nn.Module):
    """RecBole's ``MultiHeadAttention``: post-LN, ``LN(x + dropout(dense(softmax(qk/sqrt(d) + mask) v)))``."""

    def __init__(self, dim: int, heads: int, dropout: float, attention_dropout: float, eps: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attn_dropout = nn.Dropout(attention_dropout)
        self.dense = nn.Linear(dim, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        B, T, D = x.shape
        q = self.query(x).view(B, T, self.heads, self.head_dim).permute(0, 2, 1, 3)  # (B, H, T, d)
        k = self.key(x).view(B, T, self.heads, self.head_dim).permute(0, 2, 3, 1)  # (B, H, d, T)
        v = self.value(x).view(B, T, self.heads, self.head_dim).permute(0, 2, 1, 3)  # (B, H, T, d)
        scores = torch.matmul(q, k) / math.sqrt(self.head_dim) + bias  # (B, H, T, T)
        context = torch.matmul(self.attn_dropout(torch.softmax(scores, dim=-1)), v)  # (B, H, T, d)
        context = context.permute(0, 2, 1, 3).contiguous().view(B, T, D)
        return self.LayerNorm(self.out_dropout(self.dense(context)) + x)


class _FeedForward(nn.Module):
    """RecBole's ``FeedForward``: ``LN(x + dropout(dense_2(act(dense_1(x)))))``."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float, activation: str, eps: float) -> None:
        super().__init__()
        self.dense_1, self.dense_2 = nn.Linear(dim, hidden_dim), nn.Linear(hidden_dim, dim)
        self.activation = _ACTIVATIONS[activation]
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense_2(self.activation(self.dense_1(x)))) + x)


class _Layer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden_dim: int, dropout: float, attention_dropout: float,
                 activation: str, eps: float) -> None:
        super().__init__()
        self.multi_head_attention = _Attention(dim, heads, dropout, attention_dropout, eps)
        self.feed_forward = _FeedForward(dim, hidden_dim, dropout, activation, eps)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        return self.feed_forward(self.multi_head_attention(x, bias))


class _Encoder(nn.Module):
    def __init__(self, layers: int, *args: object) -> None:
        super().__init__()
        self.layer = nn.ModuleList([_Layer(*args) for _ in range(layers)])  # type: ignore[arg-type]

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        for block in self.layer:
            x = block(x, bias)
        return x


class RecBoleSASRecModel(SequentialRecommender):
    """RecBole 1.2.1's SASRec as a plain module (fitted by :class:`RecBoleSASRec`; no RecBole needed to score).

    Arguments are our SASRec's names for RecBole's keys: ``max_len`` = ``MAX_ITEM_LIST_LENGTH``,
    ``embedding_dim`` = ``hidden_size``, ``num_layers`` = ``n_layers``, ``num_heads`` = ``n_heads``,
    ``hidden_dim`` = ``inner_size`` (None = ``embedding_dim``), ``dropout`` = ``hidden_dropout_prob``,
    ``attention_dropout`` = ``attn_dropout_prob`` (None = ``dropout``), ``activation`` = ``hidden_act``,
    ``layer_norm_eps``, ``init_std`` = ``initializer_range``.

    >>> model = RecBoleSASRecModel(num_items=5, max_len=4, embedding_dim=8, num_heads=2)
    >>> model.score_sequences(torch.tensor([[0, 0, 1, 2], [3, 1, 4, 5]])).shape  # unfitted: every item unknown
    torch.Size([2, 5])
    """

    def __init__(self, num_items: int, max_len: int = 50, embedding_dim: int = 64, num_layers: int = 2,
                 num_heads: int = 2, hidden_dim: int | None = 256, dropout: float = 0.5,
                 attention_dropout: float | None = None, activation: str = "gelu", layer_norm_eps: float = 1e-12,
                 init_std: float = 0.02) -> None:
        super().__init__()
        check_sizes("RecBoleSASRecModel", num_items=num_items, max_len=max_len, embedding_dim=embedding_dim,
                    num_layers=num_layers, num_heads=num_heads)
        if embedding_dim % num_heads:
            raise ConfigError(f"embedding_dim {embedding_dim} is not a multiple of num_heads {num_heads}",
                              where="RecBoleSASRecModel", fix="pick num_heads dividing embedding_dim")
        if activation not in _ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}", where="RecBoleSASRecModel(activation=...)",
                              fix=f"use one of {sorted(_ACTIVATIONS)}")
        self.num_items, self.max_len, self.history_len = num_items, max_len, max_len
        self.embedding_dim, self.num_layers, self.num_heads = embedding_dim, num_layers, num_heads
        self.hidden_dim = hidden_dim or embedding_dim
        self.dropout_p = dropout
        self.attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.activation, self.layer_norm_eps, self.init_std = activation, layer_norm_eps, init_std
        self.item_embedding = nn.Embedding(num_items + 2, embedding_dim, padding_idx=PADDING_INDEX)  # padding, items, mask
        self.position_embedding = nn.Embedding(max_len, embedding_dim)
        self.LayerNorm = nn.LayerNorm(embedding_dim, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.trm_encoder = _Encoder(num_layers, embedding_dim, num_heads, self.hidden_dim, dropout,
                                    self.attention_dropout, activation, layer_norm_eps)
        self.register_buffer("known", torch.zeros(num_items, dtype=torch.bool))  # (N,): items RecBole trained on
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=init_std)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def recbole_config(self) -> dict[str, object]:
        """The container's hyperparameters under RecBole's config keys."""
        return {"MAX_ITEM_LIST_LENGTH": self.max_len, "hidden_size": self.embedding_dim, "n_layers": self.num_layers,
                "n_heads": self.num_heads, "inner_size": self.hidden_dim, "hidden_dropout_prob": self.dropout_p,
                "attn_dropout_prob": self.attention_dropout, "hidden_act": self.activation,
                "layer_norm_eps": self.layer_norm_eps, "initializer_range": self.init_std}

    def load_recbole(self, state: dict[str, Tensor], items: Tensor) -> None:
        """Take a RecBole SASRec ``state_dict``; ``items (V,)``: our item index of each RecBole item id (-1 at [PAD])."""
        table = state["item_embedding.weight"]  # (V, D), row 0 = RecBole's [PAD]
        rows = items[1:]
        if table.shape[0] != items.numel() or int(rows.min()) < 0 or int(rows.max()) >= self.num_items:
            raise DataError(f"RecBole's {table.shape[0]} item rows do not map onto {self.num_items} items",
                            where="RecBoleSASRecModel.load_recbole", fix="pass RecBole's field2id_token mapped to our indices")
        ours = torch.zeros_like(self.item_embedding.weight)
        ours[rows + ITEM_SHIFT] = table[1:].to(ours)
        known = torch.zeros_like(self.known)
        known[rows] = True
        self.load_state_dict({**state, "item_embedding.weight": ours, "known": known}, strict=True)

    def encode(self, sequences: Tensor) -> Tensor:
        """Hidden state ``(B, D)`` at the most recent item of left-padded sequences ``(B, T)`` (index + 1)."""
        B, T = sequences.shape
        if T > self.max_len:
            raise DataError(f"sequences of {T} items exceed max_len {self.max_len}", where="RecBoleSASRecModel.encode",
                            fix="pass padded_sequences(max_len)")
        lengths = (sequences != PADDING_INDEX).sum(1)  # (B,)
        shift = (torch.arange(T, device=sequences.device) + (T - lengths)[:, None]) % T
        seq = sequences.gather(1, shift)  # (B, T): right-padded, as RecBole's item_id_list
        x = self.item_embedding(seq) + self.position_embedding(torch.arange(T, device=seq.device))  # (B, T, D)
        x = self.dropout(self.LayerNorm(x))
        visible = torch.tril((seq != PADDING_INDEX)[:, None, None, :].expand(-1, -1, T, -1))  # (B, 1, T, T)
        h = self.trm_encoder(x, torch.where(visible, 0.0, -10000.0))  # (B, T, D); RecBole's additive mask
        return h[torch.arange(B, device=seq.device), (lengths - 1).clamp(min=0)]  # (B, D)

    def score_sequences(self, sequences: Tensor) -> Tensor:
        h = self.encode(sequences)  # (B, D)
        scores = h @ self.item_embedding.weight[ITEM_SHIFT : self.num_items + ITEM_SHIFT].T  # (B, N)
        return scores.masked_fill(~self.known, float("-inf"))


# --- the engine --------------------------------------------------------------------------------------
_NUMPY_ALIASES = {"float": np.float64, "int": np.int_, "complex": np.complex128, "object": np.object_, "str": np.str_,
                  "unicode": np.str_, "float_": np.float64, "complex_": np.complex128, "unicode_": np.str_}
_SET_BY_RECBOLE = ("bool", "long")  # Config.compatibility_settings also rebinds these (same objects on numpy 2)


class _NoWriter:
    """Stands in for tensorboard's SummaryWriter: every call does nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None: ...

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None


def _import_recbole() -> None:
    """Import RecBole's trainer (and with it ``recbole.utils``); a stub ``torch.utils.tensorboard`` stands in
    during the import when the ``tensorboard`` package is missing, and is removed again after."""
    if "recbole.trainer.trainer" in sys.modules:
        return
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        stub = types.ModuleType("torch.utils.tensorboard")
        stub.SummaryWriter = _NoWriter  # type: ignore[attr-defined]
        sys.modules["torch.utils.tensorboard"] = stub
        try:
            import recbole.trainer.trainer  # noqa: F401
        finally:
            sys.modules.pop("torch.utils.tensorboard", None)


@contextlib.contextmanager
def recbole_runtime(device: torch.device) -> Iterator[None]:
    """The workarounds of the module docstring, undone on exit."""
    added = [name for name in _NUMPY_ALIASES if name not in np.__dict__]
    kept = {name: np.__dict__[name] for name in _SET_BY_RECBOLE if name in np.__dict__}
    for name in added:
        setattr(np, name, _NUMPY_ALIASES[name])
    try:
        with contextlib.ExitStack() as stack:
            _import_recbole()
            from recbole.config import Config
            import recbole.trainer.trainer as trainer_module

            def init_device(config: Config) -> None:
                config.final_config_dict.update(single_spec=True, local_rank=0, device=device)

            stack.enter_context(mock.patch.object(Config, "_init_device", init_device))
            stack.enter_context(mock.patch.object(trainer_module, "get_tensorboard", lambda logger: _NoWriter()))
            stack.enter_context(mock.patch.object(sys, "argv", sys.argv[:1]))
            stack.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message=r".*GradScaler", category=FutureWarning)
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
            warnings.filterwarnings("ignore", message="A value is being set on a copy")  # pandas ChainedAssignmentError
            warnings.filterwarnings("ignore", message="The inplace keyword")  # pandas 3.1 deprecation (PDEP-8)
            warnings.filterwarnings("ignore", message="__array_wrap__ must accept context", category=DeprecationWarning)
            yield
    finally:
        for name in added:
            np.__dict__.pop(name, None)
        for name, value in kept.items():
            setattr(np, name, value)


def write_atomic_files(train: Interactions, folder: Path, name: str = "recsys") -> Path:
    """``folder/name/name.inter``: one row per interaction, tokens = our user and item indices, ``timestamp`` =
    the position in the user's sequence (so RecBole's stable sort by user and time keeps our order exactly)."""
    offsets, items = train.sequences()
    counts = offsets[1:] - offsets[:-1]  # (U,)
    users = torch.repeat_interleave(torch.arange(counts.numel()), counts)  # (n,)
    position = torch.arange(items.numel()) - offsets[users]  # (n,)
    path = folder / name / f"{name}.inter"
    path.parent.mkdir(parents=True, exist_ok=True)
    table = np.stack([users.numpy(), items.numpy(), position.numpy()], axis=1)
    np.savetxt(path, table, fmt="%d", delimiter="\t", comments="",
               header="user_id:token\titem_id:token\ttimestamp:float")
    return path


class RecBoleSASRec:
    """RecBole's ``SASRec`` (``loss_type`` CE) trained by RecBole's ``Trainer`` on every prefix of the run's
    training sequences, its weights then copied into a :class:`RecBoleSASRecModel` container.

    ``epochs``, ``batch_size`` (``train_batch_size``: prefixes per step), ``learning_rate`` and ``weight_decay`` are
    RecBole's training keys (optimizer Adam, RecBole's default); the architecture comes from the container
    (:meth:`RecBoleSASRecModel.recbole_config`); ``threads``: torch CPU threads during the fit (None = automatic).
    After :meth:`fit`, ``peer_`` is RecBole's model (eval mode), ``peer_items_`` our item index of each of its
    item ids (-1 at ``[PAD]``) and ``prefixes_`` the number of training examples (prefixes) RecBole built.
    """

    def __init__(self, epochs: int = 10, batch_size: int = 2048, learning_rate: float = 0.001,
                 weight_decay: float = 0.0, threads: int | None = None) -> None:
        self.epochs, self.batch_size, self.learning_rate = epochs, batch_size, learning_rate
        self.weight_decay, self.threads = weight_decay, threads

    def fit(self, model: Recommender, train: Interactions, *, device: torch.device, generator: torch.Generator,
            progress: bool = True) -> None:
        if not (callable(getattr(model, "recbole_config", None)) and callable(getattr(model, "load_recbole", None))):
            raise ConfigError(f"{type(model).__name__} cannot take RecBole SASRec weights", where="RecBoleSASRec",
                              fix="use recsys.benchmarks.peers_recbole.RecBoleSASRecModel as module")
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        with tempfile.TemporaryDirectory(prefix="recbole-") as tmp, recbole_runtime(device), \
                torch_threads(resolve_threads(self.threads)), torch.random.fork_rng(devices=rng_devices):
            from recbole.config import Config
            from recbole.data import create_dataset
            from recbole.data.dataloader import TrainDataLoader
            from recbole.model.sequential_recommender import SASRec
            from recbole.trainer import Trainer

            write_atomic_files(train, Path(tmp))
            config = Config(model="SASRec", dataset="recsys", config_dict={
                "data_path": tmp, "checkpoint_dir": str(Path(tmp) / "saved"), "seed": seed, "reproducibility": False,
                "use_gpu": device.type == "cuda", "worker": 0, "show_progress": progress,
                "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
                "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "normalize_all": False,
                "loss_type": "CE", "train_neg_sample_args": None, **model.recbole_config(),
                "epochs": self.epochs, "train_batch_size": self.batch_size, "learner": "adam",
                "learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
                # every row trains: a ratio split that holds nothing out; RecBole's Trainer gets no validation data
                "eval_args": {"split": {"RS": [1.0, 0.0, 0.0]}, "order": "TO", "group_by": "user", "mode": "full"},
            })
            dataset = create_dataset(config)
            rows = dataset.build()[0]
            torch.manual_seed(seed)  # RecBole draws its initial weights and dropout masks from torch's global RNG
            peer = SASRec(config, rows).to(device)
            self.prefixes_ = len(rows)
            log.info("RecBole SASRec: %d training prefixes, %d items", self.prefixes_, rows.item_num - 1)
            Trainer(config, peer).fit(TrainDataLoader(config, rows, None, shuffle=True), None, verbose=progress,
                                      saved=False, show_progress=progress)
            tokens = dataset.field2id_token["item_id"]  # RecBole id -> our item index as a string, [PAD] first
            items = torch.from_numpy(np.concatenate([[-1], np.asarray(tokens[1:]).astype(np.int64)]))
        self.peer_, self.peer_items_ = peer.eval(), items
        model.load_recbole({k: v.detach() for k, v in peer.state_dict().items()}, items)
