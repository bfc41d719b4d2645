"""Saved runs: a run directory is a complete artifact that :func:`load_run` turns back into a fitted model.

A run directory holds (format version :data:`FORMAT_VERSION`):

- ``run.json``: format name and version, recsys version, the model's class and constructor arguments
  (data-derived sizes included), the dataset name, and which optional parts are present;
- ``model.safetensors``: the fitted model's parameters and buffers (no pickle);
- ``users.parquet`` / ``items.parquet``: the id vocabularies, original ids in index order;
- ``history.parquet``: the interactions known at inference time (train + validation, id-mapped), with
  ``user_features.parquet`` / ``item_features.parquet`` when the dataset has side features;
- ``features.json``: the fitted feature pipeline of CTR models;
- ``config.yaml`` (written by the CLI), ``metrics.json``, ``metrics.csv``, ``checkpoint.pt``, ``last.pt``.

Loading runs no code from the directory: the model class must be a :class:`~recsys.models.Recommender`
inside the ``recsys`` package, tensors come from safetensors, everything else is JSON or parquet.

>>> import tempfile, polars as pl
>>> from recsys.data import from_frame
>>> from recsys.models import Popularity
>>> data = from_frame(pl.DataFrame({"user": [1, 1, 2], "item": [10, 20, 10]}))
>>> model = Popularity(num_items=data.num_items); model.prepare(data)
>>> path = save_run(tempfile.mkdtemp(), model, {"num_items": data.num_items}, history=data)
>>> run = load_run(path)
>>> run.model.score_users(torch.tensor([0]), run.history).tolist(), run.items.to_original([0, 1])
([[2.0, 1.0]], [10, 20])
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

import polars as pl
import torch

from recsys import __version__
from recsys.data.interactions import Interactions
from recsys.data.vocabulary import Vocabulary
from recsys.errors import CheckpointError
from recsys.inference import FittedRecommender
from recsys.models.base import Recommender
from recsys.runtime import atomic_write, atomic_write_text, resolve_device

__all__ = ["FORMAT", "FORMAT_VERSION", "LoadedRun", "load_run", "model_spec", "save_run"]

log = logging.getLogger(__name__)

FORMAT = "recsys-run"
FORMAT_VERSION = 1
_FEATURES_ARG = {"$features": "features.json"}  # stands in run.json for the fitted feature pipeline


class LoadedRun(FittedRecommender):
    """A fitted model rebuilt from a run directory: recommendations, similar items and embeddings in
    original ids (:class:`~recsys.inference.FittedRecommender`), plus the run's metrics and description."""

    def __init__(self, path: Path, model: Recommender, history: Interactions, *, features: Any = None,
                 metrics: dict[str, Any] | None = None, info: dict[str, Any] | None = None) -> None:
        super().__init__(model, history)
        self.path, self.features = path, features
        self.metrics, self.info = metrics or {}, info or {}

    def __repr__(self) -> str:
        return f"LoadedRun({str(self.path)!r}, {type(self.model).__name__}, users={len(self.users)}, items={len(self.items)})"


def model_spec(model: Recommender, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``{"target": "module.Class", "kwargs": {...}}``: JSON that rebuilds ``model``'s architecture.

    The fitted feature pipeline (argument ``features``) is stored apart, in ``features.json``.
    Raises :class:`CheckpointError` when an argument is not plain JSON (numbers, strings, lists, dicts).
    """
    cls = type(model)
    args = {}
    for key, value in kwargs.items():
        if key == "features" and hasattr(value, "to_dict"):
            args[key] = dict(_FEATURES_ARG)
            continue
        if isinstance(value, tuple):
            value = list(value)
        try:
            json.dumps(value)
        except TypeError:
            raise CheckpointError(
                f"constructor argument {key}={value!r} of {cls.__name__} is not plain JSON, so the run cannot be saved",
                where=f"{cls.__module__}.{cls.__qualname__}", fix="pass numbers, strings or lists as model hyperparameters",
            ) from None
        args[key] = value
    return {"target": f"{cls.__module__}.{cls.__qualname__}", "kwargs": args}


def save_run(
    run_dir: str | Path,
    model: Recommender,
    kwargs: dict[str, Any],
    *,
    history: Interactions,
    features: Any = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the inference artifact of a fitted ``model`` (built as ``type(model)(**kwargs)``) into ``run_dir``.

    Every file is written to a temporary name and renamed, ``run.json`` last: a directory without a
    ``run.json`` is an unfinished run.
    """
    from safetensors.torch import save

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = model_spec(model, kwargs)
    tensors = {name: value.detach().to("cpu").clone().contiguous() for name, value in model.state_dict().items()}
    sparse = [name for name, value in tensors.items() if value.layout != torch.strided]
    for name in sparse:
        tensors[name] = tensors[name].to_dense()
    atomic_write(run_dir / "model.safetensors", lambda file: file.write(save(tensors)))
    parts = {"history": history is not None, "features": features is not None, "sparse": sparse}
    if history is not None:
        _write_parquet(run_dir / "users.parquet", history.users.ids.to_frame("id"))
        _write_parquet(run_dir / "items.parquet", history.items.ids.to_frame("id"))
        _write_parquet(run_dir / "history.parquet", history.frame)
        for name in ("user_features", "item_features"):
            frame = getattr(history, name)
            parts[name] = frame is not None
            if frame is not None:
                _write_parquet(run_dir / f"{name}.parquet", frame)
    if features is not None:
        atomic_write_text(run_dir / "features.json", json.dumps(features.to_dict()))
    if metrics is not None:
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, default=float))
    info = {"format": FORMAT, "version": FORMAT_VERSION, "recsys_version": __version__, "model": spec,
            "dataset": history.name if history is not None else None, "parts": parts, **(extra or {})}
    atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2))
    return run_dir


def load_run(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the fitted model of a run directory written by :func:`save_run` (the CLI and the pipeline call it).

    ``device="auto"`` picks CUDA when available. A missing or foreign directory, a truncated or
    altered file, or a run written by an incompatible format version raises :class:`CheckpointError`
    saying which file and what to do.
    """
    path = Path(path)
    info = _read_info(path)
    model = _build_model(path, info)
    state = _read_tensors(path / "model.safetensors")
    for name in info.get("parts", {}).get("sparse", []):
        if name in state:
            state[name] = state[name].to_sparse_csr() if state[name].dim() == 2 else state[name].to_sparse()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"the weights do not match the model ({str(error).splitlines()[0]})", where=str(path / "model.safetensors"),
                              fix="the file belongs to another run or was altered: train again") from None
    model.to(resolve_device(device)).eval()
    parts = info.get("parts", {})
    if not parts.get("history"):
        raise CheckpointError("the run holds no vocabularies or history", where=str(path / "run.json"),
                              fix="save runs with history= (the pipeline and recsys-train do)")
    users = Vocabulary(_read_parquet(path / "users.parquet")["id"])
    items = Vocabulary(_read_parquet(path / "items.parquet")["id"])
    frames = {name: _read_parquet(path / f"{name}.parquet") if parts.get(name) else None for name in ("user_features", "item_features")}
    history = Interactions(_read_parquet(path / "history.parquet"), users, items, name=info.get("dataset") or "custom",
                           assume_sorted=True, **frames)
    metrics = _read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
    return LoadedRun(path, model, history, features=getattr(model, "features", None), metrics=metrics, info=info)


# --- helpers ---------------------------------------------------------------------------------------
def _write_parquet(path: Path, frame: pl.DataFrame) -> None:
    atomic_write(path, lambda file: frame.write_parquet(file))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path.name} ({type(error).__name__}: {error})", where=str(path),
                              fix="the run directory is damaged or unfinished: train again") from None


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except Exception as error:  # polars raises several types for missing or damaged files
        raise CheckpointError(f"cannot read {path.name} ({type(error).__name__})", where=str(path),
                              fix="the run directory is damaged or unfinished: train again") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError("the run has no model.safetensors", where=str(path.parent), fix="train again; the run did not finish")
    try:
        return load_file(path)
    except Exception as error:  # safetensors raises SafetensorError, OSError, ... for damaged files
        raise CheckpointError(f"model.safetensors is truncated or damaged ({type(error).__name__}: {error})", where=str(path),
                              fix="train again, or copy the run directory again") from None


def _read_info(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise CheckpointError("run directory not found", where=str(path), fix="pass the directory a training run printed")
    if not (path / "run.json").is_file():
        raise CheckpointError("not a recsys run directory (no run.json)", where=str(path),
                              fix="pass a run directory written by recsys-train or recsys.run_pipeline; an unfinished run has none")
    info = _read_json(path / "run.json")
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError("run.json is not a recsys run description", where=str(path / "run.json"),
                              fix="pass a run directory written by recsys")
    if info.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"run format version {info.get('version')!r} (recsys {info.get('recsys_version')}); this recsys reads version {FORMAT_VERSION}",
                              where=str(path / "run.json"), fix=f"load it with recsys {info.get('recsys_version')}, or train again")
    return info


def _build_model(path: Path, info: dict[str, Any]) -> Recommender:
    spec = info.get("model") or {}
    target, kwargs = spec.get("target", ""), dict(spec.get("kwargs") or {})
    module_name, _, name = str(target).rpartition(".")
    cls = None
    if module_name == "recsys" or module_name.startswith("recsys."):  # never import what a file names outside recsys
        try:
            cls = getattr(importlib.import_module(module_name), name, None)
        except ImportError:
            cls = None
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise CheckpointError(f"run.json names {target!r}, which is no recsys model", where=str(path / "run.json"),
                              fix="pass a run directory written by recsys; its model must be a recsys.models class")
    if kwargs.get("features") == _FEATURES_ARG:
        from recsys.data.features import FeaturePipeline

        kwargs["features"] = FeaturePipeline.from_dict(_read_json(path / "features.json"))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"cannot rebuild {name} from run.json ({error})", where=str(path / "run.json"),
                              fix="the run was written by another recsys version: train again") from None
