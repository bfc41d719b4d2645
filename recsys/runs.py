"""Saved runs: a run directory is a complete artifact that :func:`load_run` turns back into a fitted model.

A run directory holds (format version :data:`FORMAT_VERSION`):

- ``run.json``: format name and version, recsys version, the model's class and constructor arguments
  (data-derived sizes included), the dataset name, and which optional parts are present;
- ``model.safetensors``: the fitted model's parameters and buffers (no pickle);
- ``users.parquet`` / ``items.parquet``: the id vocabularies, original ids in index order;
- ``history.parquet``: the interactions known at inference time (train + validation, id-mapped), with
  ``user_features.parquet`` / ``item_features.parquet`` when the dataset has side features;
- ``features.json``: the fitted feature pipeline of CTR models;
- ``valid.parquet`` / ``test.parquet``: the evaluation targets (id-mapped rows, or a CTR table's rows) and, in
  ``run.json``, the evaluator's class and arguments, so :func:`evaluate_run` scores the run again exactly;
- ``config.yaml`` (written by the CLI), ``metrics.json``, ``metrics.csv``, ``checkpoint.pt``, ``last.pt``.

A run on CTR rows of libsvm / libFM files (a :class:`~recsys.data.ctr_files.CTRTable`) has no vocabularies or
history; ``run.json`` records how its files were read (``ctr_table``), so new files are read the same way.

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
import inspect
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from recsys import __version__
from recsys.data.ctr_files import CTRTable, load_ctr_files
from recsys.data.frame import from_frame
from recsys.data.interactions import Interactions
from recsys.data.sequences_file import load_sequence_file
from recsys.data.vocabulary import Vocabulary
from recsys.errors import CheckpointError, ConfigError, DataError
from recsys.evaluation.table import format_table
from recsys.inference import FittedRecommender
from recsys.models.base import Recommender
from recsys.runtime import atomic_write, atomic_write_text, resolve_device

__all__ = ["FORMAT", "FORMAT_VERSION", "LoadedRun", "RunEvaluation", "evaluate_run", "evaluator_spec", "load_run",
           "model_spec", "save_run"]

log = logging.getLogger(__name__)

FORMAT = "recsys-run"
FORMAT_VERSION = 1
_FEATURES_ARG = {"$features": "features.json"}  # stands in run.json for the fitted feature pipeline
_TARGETS = ("valid", "test")


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


def evaluator_spec(evaluator: Any) -> dict[str, Any] | None:
    """``{"target", "kwargs"}`` that rebuilds ``evaluator`` (its constructor arguments, kept as attributes the
    scikit-learn way), or None when it is not a recsys evaluator or an argument is not plain JSON."""
    cls = type(evaluator)
    if not cls.__module__.startswith("recsys.evaluation"):
        return None
    kwargs = {}
    for name in inspect.signature(cls.__init__).parameters:
        if name == "self":
            continue
        if name == "features":  # the run's fitted pipeline, passed again when rebuilt
            kwargs[name] = dict(_FEATURES_ARG)
            continue
        if not hasattr(evaluator, name):
            return None
        value = getattr(evaluator, name)
        value = list(value) if isinstance(value, tuple) else value
        try:
            json.dumps(value)
        except TypeError:
            return None
        kwargs[name] = value
    return {"target": f"{cls.__module__}.{cls.__qualname__}", "kwargs": kwargs}


def save_run(
    run_dir: str | Path,
    model: Recommender,
    kwargs: dict[str, Any],
    *,
    history: Interactions | CTRTable | None,
    features: Any = None,
    metrics: dict[str, Any] | None = None,
    targets: Mapping[str, Interactions | CTRTable] | None = None,
    evaluator: Any = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the inference artifact of a fitted ``model`` (built as ``type(model)(**kwargs)``) into ``run_dir``.

    ``targets`` (``{"valid": ..., "test": ...}``, parts of the same split as ``history``) and ``evaluator`` are
    kept for :func:`evaluate_run`. A :class:`CTRTable` ``history`` (CTR rows) is not stored: such a run
    scores rows and keeps only how they were read. Every file is written to a temporary name and renamed,
    ``run.json`` last: a directory without a ``run.json`` is an unfinished run.
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
    table = history if isinstance(history, CTRTable) else None
    history = None if table is not None else history
    parts: dict[str, Any] = {"history": history is not None, "features": features is not None, "sparse": sparse}
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
    parts["targets"] = []
    for name, part in (targets or {}).items():
        if name not in _TARGETS:
            raise ConfigError(f"unknown target part {name!r}", where="save_run(targets=...)", fix=f"use {list(_TARGETS)}")
        _write_parquet(run_dir / f"{name}.parquet", part.frame)
        parts["targets"].append(name)
    source = history if history is not None else table
    info = {"format": FORMAT, "version": FORMAT_VERSION, "recsys_version": __version__, "model": spec,
            "dataset": source.name if source is not None else None, "parts": parts, **(extra or {})}
    if table is not None:
        info["ctr_table"] = {"fields": table.fields, "reader": table.reader}
    if evaluator is not None and evaluator_spec(evaluator) is not None:
        info["evaluator"] = evaluator_spec(evaluator)
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
    if "ctr_table" in info:  # CTR rows: no catalogue, an empty history keeps the recommender's contract
        empty = Vocabulary(pl.Series("id", [], dtype=pl.Int64))
        history = Interactions(pl.DataFrame({"user": [], "item": []}, schema={"user": pl.Int64, "item": pl.Int64}),
                               empty, empty, name=info.get("dataset") or "custom")
    elif not parts.get("history"):
        raise CheckpointError("the run holds no vocabularies or history", where=str(path / "run.json"),
                              fix="save runs with history= (the pipeline and recsys-train do)")
    else:
        users = Vocabulary(_read_parquet(path / "users.parquet")["id"])
        items = Vocabulary(_read_parquet(path / "items.parquet")["id"])
        frames = {name: _read_parquet(path / f"{name}.parquet") if parts.get(name) else None for name in ("user_features", "item_features")}
        history = Interactions(_read_parquet(path / "history.parquet"), users, items, name=info.get("dataset") or "custom",
                               assume_sorted=True, **frames)
    metrics = _read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
    return LoadedRun(path, model, history, features=getattr(model, "features", None), metrics=metrics, info=info)


@dataclass
class RunEvaluation:
    """What :func:`evaluate_run` returns: the evaluator's metrics on one part (``"valid"``, ``"test"`` or the
    new data's name), the rows scored, and the rows of new data left out because the run never saw their user
    or item."""

    metrics: dict[str, float]
    part: str
    rows: int
    dropped: int = 0

    def table(self) -> str:
        """One row per metric, as the end of training prints them."""
        return format_table([{"metric": k, self.part: v} for k, v in self.metrics.items() if k != "num_users"])


def evaluate_run(
    run: str | Path | LoadedRun,
    split: str = "test",
    *,
    data: Any = None,
    columns: Mapping[str, Any] | None = None,
    evaluator: Any = None,
    device: str | torch.device = "cpu",
) -> RunEvaluation:
    """Score a saved run with its own evaluator, without Hydra.

    - ``split``: ``"test"`` or ``"valid"``, the parts the run kept: the same rows, history and evaluator as at
      the end of training, so the same numbers (``metrics.json``'s ``test``; ``valid`` of the best epoch).
    - ``data``: new rows instead, in original ids: a CSV/TSV/Parquet/.txt sequence file or a polars/pandas frame
      (read with ``columns``: ``user_col``, ``item_col``, ``rating_col``, ``time_col``, ``separator``), scored
      against the run's history; rows with a user or item the run never saw are left out and counted. For
      a run on libsvm / libFM files, another file of that dataset (read as the run read its own) or a
      :class:`CTRTable`.
    - ``evaluator``: another evaluator (default: the one ``run.json`` records).
    """
    run = run if isinstance(run, LoadedRun) else load_run(run, device=device)
    evaluator = evaluator if evaluator is not None else _evaluator(run)
    table = run.info.get("ctr_table")
    if data is None:
        if split not in _TARGETS:
            raise ConfigError(f"unknown split {split!r}", where="evaluate_run(split=...)", fix=f"use {' or '.join(_TARGETS)}")
        if split not in run.info.get("parts", {}).get("targets", []):
            raise CheckpointError(f"the run kept no {split} part", where=str(run.path),
                                  fix="train it again with this recsys version, or score new data (data= / --data)")
        frame = _read_parquet(run.path / f"{split}.parquet")
        if table is not None:
            targets: Any = CTRTable(frame, table["fields"], name=run.history.name, reader=table["reader"])
        else:
            targets = run.history.with_frame(frame, assume_sorted=True)
        if targets.num_interactions == 0:
            raise DataError(f"the run's {split} part is empty (a split without {split} rows)", where=str(run.path / f"{split}.parquet"),
                            fix="score the other part, or new data (data= / --data)")
        history = run.history if split == "test" or table is not None else _without(run.history, targets)
        part, dropped = split, 0
    else:
        targets, dropped = _new_targets(run, data, dict(columns or {}))
        history, part = run.history, Path(data).name if isinstance(data, (str, Path)) else "data"
    metrics = evaluator.evaluate_model(run.model, history, targets)
    return RunEvaluation({k: float(v) for k, v in metrics.items()}, part, targets.num_interactions, dropped)


def _evaluator(run: LoadedRun) -> Any:
    """The evaluator ``run.json`` records, rebuilt (only classes of ``recsys.evaluation``)."""
    spec = run.info.get("evaluator")
    if not spec:
        raise CheckpointError("the run does not record its evaluator", where=str(run.path / "run.json"),
                              fix="pass evaluator= (recsys evaluate builds it from the run's config.yaml), or train again")
    module_name, _, name = str(spec.get("target", "")).rpartition(".")
    cls = None
    if module_name == "recsys.evaluation" or module_name.startswith("recsys.evaluation."):  # never import what a file names elsewhere
        try:
            cls = getattr(importlib.import_module(module_name), name, None)
        except ImportError:
            cls = None
    kwargs = {k: run.features if v == _FEATURES_ARG else v for k, v in (spec.get("kwargs") or {}).items()}
    try:
        if isinstance(cls, type) and hasattr(cls, "evaluate_model"):
            return cls(**kwargs)
    except (TypeError, ValueError):
        pass
    raise CheckpointError(f"run.json names the evaluator {spec.get('target')!r} {spec.get('kwargs')}, which this recsys cannot "
                          "rebuild", where=str(run.path / "run.json"), fix="pass evaluator=, or a run directory written by recsys")


def _without(history: Interactions, part: Interactions) -> Interactions:
    """``history`` less the rows of ``part`` (as multisets: a row twice in history and once in ``part`` stays once),
    i.e. the training rows of a run whose history is train + valid."""
    columns = history.frame.columns
    copy = pl.int_range(pl.len()).over(columns).alias("_copy")  # which copy of an identical row
    rest = history.frame.with_columns(copy).join(part.frame.select(columns).with_columns(copy), on=[*columns, "_copy"],
                                                 how="anti", maintain_order="left")
    return history.with_frame(rest.drop("_copy"), assume_sorted=True)


def _new_targets(run: LoadedRun, data: Any, columns: dict[str, Any]) -> tuple[Any, int]:
    """New rows on the run's vocabularies (or a CTR table read as the run's), and how many were left out."""
    table = run.info.get("ctr_table")
    if table is not None:
        if isinstance(data, CTRTable):
            if data.fields != table["fields"]:
                raise DataError(f"the table's fields {data.fields} differ from the run's {table['fields']}",
                                where="evaluate_run(data=...)", fix="score rows of the dataset the run was trained on")
            return data, 0
        if not isinstance(data, (str, Path)):
            raise DataError(f"a run on CTR files scores a file or a CTRTable, got {type(data).__name__}",
                            where="evaluate_run(data=...)", fix="pass the path of a libsvm / libFM file")
        reader = table["reader"]
        return load_ctr_files(data, format=reader["format"], fields=reader["fields"], num_features=reader["num_features"],
                              kinds=reader["kinds"], name=run.history.name), 0
    if isinstance(data, Interactions):
        new = data
    elif isinstance(data, (str, Path)) and Path(data).suffix.lower() == ".txt":
        new = load_sequence_file(data)
    else:
        new = from_frame(data, **columns)
    users = run.users.to_index(new.users.ids.gather(new.frame["user"]), unknown="oov")
    items = run.items.to_index(new.items.ids.gather(new.frame["item"]), unknown="oov")
    known = (users < len(run.users)) & (items < len(run.items))
    frame = new.frame.with_columns(pl.Series("user", users.numpy()), pl.Series("item", items.numpy()))
    frame = frame.filter(pl.Series(known.numpy()))
    if frame.height == 0:
        raise DataError(f"none of the {new.num_interactions} rows has a user and an item the run knows",
                        where="evaluate_run(data=...)", fix="score rows of the users and items the run was trained on")
    if frame.height < new.num_interactions:
        log.info("left out %d of %d rows: user or item unknown to the run", new.num_interactions - frame.height, new.num_interactions)
    return run.history.with_frame(frame), new.num_interactions - frame.height


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
