"""Pretraining engines: start a model from the checkpoints of earlier runs (read here, never in a model file).

:class:`NeuMFPretrained` is NeuMF's pretraining (He et al. 2017, Section 3.4.1): the GMF and MLP
towers of a ``mode=gmf`` and a ``mode=mlp`` run initialize the fused model before the Trainer
fine-tunes it. Checkpoints are read with :func:`~recsys.training.checkpoint.load_checkpoint`
(``weights_only``): a path in a config is user input, and a crafted pickle must run nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from recsys.errors import CheckpointError, ConfigError
from recsys.training.checkpoint import load_checkpoint

if TYPE_CHECKING:
    from recsys.data.interactions import Interactions
    from recsys.models.base import Recommender

__all__ = ["NeuMFPretrained"]


class NeuMFPretrained:
    """Loads the towers of two pretraining checkpoints (``gmf``, ``mlp``) into a ``mode=neumf`` model (a
    :class:`~recsys.training.engine.FitEngine`); the output layer is weighted ``alpha`` / ``1 - alpha``.

    The model provides ``tower(mode)`` (a fresh one-tower model of its sizes) and
    ``load_pretrained(gmf, mlp, alpha)``. A checkpoint is a Trainer checkpoint (weights under
    ``"model"``) or a bare state dict.

    >>> import tempfile, pathlib
    >>> from recsys.models.neumf import NeuMF
    >>> from recsys.training.checkpoint import save_checkpoint
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> model = NeuMF(num_users=3, num_items=4, gmf_dim=2, mlp_dim=2, layers=(4, 2))
    >>> for mode in ("gmf", "mlp"):
    ...     save_checkpoint(folder / f"{mode}.pt", {"model": model.tower(mode).state_dict()})
    >>> NeuMFPretrained(gmf=str(folder / "gmf.pt"), mlp=str(folder / "mlp.pt")).fit(
    ...     model, None, device=torch.device("cpu"), generator=torch.Generator(), progress=False)
    """

    def __init__(self, gmf: str, mlp: str, alpha: float = 0.5) -> None:
        if not gmf or not mlp:
            raise ConfigError("NeuMF pretraining needs both checkpoints", where="NeuMFPretrained",
                              fix="set model.engine.gmf and model.engine.mlp to the checkpoint.pt of a mode=gmf and a mode=mlp run")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha}", where="NeuMFPretrained", fix="e.g. alpha=0.5 (the paper's)")
        self.gmf, self.mlp, self.alpha = gmf, mlp, alpha

    def fit(self, model: Recommender, train: Interactions | None, *, device: torch.device, generator: torch.Generator,
            progress: bool = True) -> None:
        model.load_pretrained(self._tower(model, self.gmf, "gmf"), self._tower(model, self.mlp, "mlp"), self.alpha)

    @staticmethod
    def _tower(model: Any, path: str, mode: str) -> Any:
        fix = f"pass the checkpoint.pt of a run with model.module.mode={mode} and the same sizes"
        try:
            state = load_checkpoint(path, map_location="cpu", required=())
        except CheckpointError as error:
            raise CheckpointError(f"cannot load the pretrained {mode} model: {error.what}", where=path, fix=fix) from None
        tower = model.tower(mode)
        try:
            tower.load_state_dict(state.get("model", state))
        except (RuntimeError, TypeError, AttributeError) as error:
            raise CheckpointError(f"the pretrained {mode} model does not fit ({type(error).__name__}: {error})", where=path, fix=fix) from None
        return tower
