"""The one recipe: data -> split -> model -> fit -> evaluate -> run directory, typed and without Hydra.

The CLI, the benchmarks and the notebooks call :func:`run_pipeline`; nobody writes the recipe again.
Components that need the data are passed as factories (a class or ``functools.partial``): the
pipeline fills what the data decides (``num_users``, ``num_items``, the fitted ``features``).

>>> import functools, tempfile
>>> from recsys.data import load_dataset
>>> from recsys.models import BPRMF
>>> from recsys.data import PairwiseBatches
>>> from recsys.training import Trainer
>>> data = load_dataset("ml-latest-small")
>>> result = run_pipeline(
...     data, functools.partial(BPRMF, embedding_dim=16),
...     batches=functools.partial(PairwiseBatches, batch_size=4096, seed=0),
...     optimizer=functools.partial(torch.optim.Adam, lr=0.003),
...     trainer=Trainer(epochs=2, progress=False, tensorboard=False), run_dir=tempfile.mkdtemp())
>>> result.best_epoch, 0.0 < result.test["ndcg@10"] < 1.0, (result.run_dir / "run.json").is_file()
(2, True, True)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch

from recsys.data.ctr_files import CTRTable
from recsys.data.interactions import Interactions
from recsys.data.splits import Split, leave_one_out
from recsys.evaluation.cold_start import ColdStartSplit
from recsys.errors import ConfigError, DataError
from recsys.evaluation.ranking import RankingEvaluator
from recsys.evaluation.table import format_table
from recsys.inference import FittedRecommender
from recsys.models.base import Recommender
from recsys.models.popularity import Popularity
from recsys.runs import model_spec, save_run
from recsys.runtime import atomic_write, atomic_write_text, resolve_device
from recsys.training.distributed import is_main_process
from recsys.training.engine import warm_up_in_background
from recsys.training.monitor import Monitor
from recsys.training.trainer import Trainer

__all__ = ["RunResult", "check_compatible", "check_monitor", "open_arguments", "run_pipeline"]

log = logging.getLogger(__name__)

#: Constructor arguments the pipeline fills from the data when a factory leaves them open.
DATA_ARGUMENTS = ("num_users", "num_items", "features")


@dataclass
class RunResult:
    """What :func:`run_pipeline` returns: the fitted model, its metrics and where the run was saved."""

    model: Recommender
    dataset: str
    num_users: int
    num_items: int
    best_epoch: int
    train_seconds: float
    total_seconds: float
    valid: dict[str, float]
    test: dict[str, float]
    history: Interactions | CTRTable
    popularity_test: dict[str, float] | None = None
    run_dir: Path | None = None
    epochs: list[dict[str, float]] = field(default_factory=list)
    fit_interactions: int = 0  # interactions the model was fitted on (train, or train + valid)
    test_per_user: dict[str, torch.Tensor] | None = None  # "user" (indices) and each user's test value per metric
    features: Any = None  # the fitted feature pipeline of a CTR run (a copy of the one passed in)

    @property
    def recommender(self) -> FittedRecommender:
        """Recommendations, similar items and embeddings in original ids from the fitted model."""
        if isinstance(self.history, CTRTable):
            raise ConfigError(f"{self.dataset!r} is CTR rows (libsvm / libFM files): the model scores rows, it has no "
                              "catalogue of users and items to recommend from", where="RunResult.recommender",
                              fix="score rows with recsys.evaluate_run(run_dir, data=FILE) or model.predict")
        return FittedRecommender(self.model, self.history)

    def summary(self) -> dict[str, Any]:
        """The JSON-able summary written to ``metrics.json``."""
        out = {"dataset": self.dataset, "model": type(self.model).__name__, "num_users": self.num_users,
               "num_items": self.num_items, "fit_interactions": self.fit_interactions, "best_epoch": self.best_epoch, "train_seconds": round(self.train_seconds, 3),
               "total_seconds": round(self.total_seconds, 3), "valid": self.valid, "test": self.test}
        if self.popularity_test is not None:
            out["popularity_test"] = self.popularity_test
        return out

    def table(self) -> str:
        """One row per metric: validation (best epoch), test, and the popularity baseline's test."""
        name = type(self.model).__name__
        columns = {f"{name} valid": self.valid, f"{name} test": self.test}
        if self.popularity_test is not None:
            columns["Popularity test"] = self.popularity_test
        names = [k for k in self.test if k != "num_users"]
        return format_table([{"metric": m, **{c: values.get(m) for c, values in columns.items()}} for m in names])


def metric_names(evaluator: Any) -> list[str] | None:
    """The keys ``evaluator`` reports (None when it cannot say before it runs)."""
    names = getattr(evaluator, "metric_names", None)
    return list(names()) if callable(names) else None


def check_monitor(trainer: Trainer, evaluator: Any) -> None:
    """Fail before any data is loaded when ``trainer.monitor`` names no metric the evaluator reports.

    >>> check_monitor(Trainer(monitor="ndcg@10"), RankingEvaluator(ks=(10,)))
    >>> check_monitor(Trainer(monitor="ndcg@50"), RankingEvaluator(ks=(10,)))
    Traceback (most recent call last):
    ...
    recsys.errors.ConfigError: trainer.monitor 'ndcg@50' is not a metric of RankingEvaluator
      where: trainer.monitor
      fix: choose one of (or a sum such as auc-logloss): hr@10, recall@10, precision@10, ndcg@10, mrr@10, map@10, coverage@10
    """
    names = metric_names(evaluator)
    unknown = [name for name in Monitor.parse(trainer.monitor).names if name not in (names or ())]
    if names is not None and unknown:
        raise ConfigError(f"trainer.monitor {unknown[0]!r} is not a metric of {type(evaluator).__name__}",
                          where="trainer.monitor", fix=f"choose one of (or a sum such as auc-logloss): {', '.join(names)}")


def check_compatible(model: Recommender | type, evaluator: Any) -> None:
    """Fail before fitting when ``model`` (or its class) lacks the method ``evaluator`` calls (e.g. DeepFM under
    full ranking)."""
    needs = getattr(evaluator, "requires", None)
    cls = model if isinstance(model, type) else type(model)
    if needs and getattr(cls, needs, None) is getattr(Recommender, needs, None):
        raise ConfigError(
            f"{cls.__name__} has no {needs}(), which {type(evaluator).__name__} needs",
            where="model / eval",
            fix="rank with eval=full (or experiment=...), score CTR models with eval=ctr (experiment=deepfm_ctr), "
            "ratings with eval=rating (experiment=biased_mf_rating)",
        )


def open_arguments(factory: Callable[..., Any]) -> set[str]:
    """Names of ``factory``'s parameters that it does not bind already (partials keep theirs)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return set()
    bound = set(factory.keywords) if isinstance(factory, functools.partial) else set()
    return {name for name in params if name not in bound}


def _build(factory: Callable[..., Any], available: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Call ``factory`` with the ``available`` arguments it leaves open; returns the object and every keyword used."""
    open_args = open_arguments(factory)
    given = {k: v for k, v in available.items() if k in open_args}
    bound = dict(factory.keywords) if isinstance(factory, functools.partial) else {}
    return factory(**given), {**bound, **given}


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Torch's RNGs seeded for the run and restored afterwards (no global state leaks out of the pipeline)."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _check_parts(data: Interactions | CTRTable, split: Any, parts: tuple[str, ...] = ("train", "test")) -> None:
    """One DataError for a split with no training or no test rows (an empty validation part is allowed)."""
    for part in parts:
        if getattr(split, part).num_interactions == 0:
            raise DataError(f"the {part} part of the split of {data.name!r} is empty", where=f"split ({type(split).__name__})",
                            fix="check the data files and the split's ratios (e.g. split.ratios=[0.8,0.1,0.1])")


def run_pipeline(
    data: Interactions | CTRTable,
    model: Callable[..., Recommender],
    *,
    split: Split | ColdStartSplit | Callable[[Interactions], Split | ColdStartSplit] = leave_one_out,
    batches: Callable[..., Iterable[dict[str, torch.Tensor]]] | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    engine: Any = None,
    features: Any = None,
    trainer: Trainer | None = None,
    evaluator: Any = None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    compare_to_popularity: bool = False,
    item_text_init: str | None = None,
    fit_on: str = "train",
    callbacks: Sequence[Callable[[dict[str, float]], bool | None]] = (),
    evaluate_test: bool = True,
) -> RunResult:
    """Fit ``model`` on the training part of ``split(data)``, select on validation, report test metrics.

    - ``model``: a factory (class or partial) called with the ``num_users``/``num_items``/``features``
      it leaves open; ``batches`` likewise, with ``data=`` the training split.
    - ``data``: interactions, or the CTR rows of libsvm / libFM files (a :class:`~recsys.data.ctr_files.CTRTable`,
      for LR / FM / DeepFM with ``features=field_features(data.fields)``, split by ``random_split`` or ``file_split``).
    - ``split``: a split or a function of the data returning one; a :class:`ColdStartSplit`
      (:func:`recsys.cold_start_split`) has no validation part, so the model fits for its epoch budget and
      the test items (never seen in training) are ranked among all items.
    - ``features``: a feature pipeline (CTR models): a copy is fitted once on the training split and
      handed to the model, the batches and the evaluator (one object, ``result.model.features``); the
      caller's pipeline is left untouched.
    - ``engine``: a non-gradient fitting engine (``recsys.training.engine.FitEngine``), run after
      ``model.prepare(train, generator)``; the ``trainer`` then runs when ``batches`` and ``optimizer`` are set.
    - ``evaluator``: full-ranking :class:`RankingEvaluator` by default; ``trainer.monitor`` must be one of its keys.
    - ``run_dir``: where the run is saved (:func:`recsys.runs.load_run` reads it back).
    - ``fit_on``: ``"train"`` selects the best epoch on validation; ``"train+valid"`` fits on both for
      ``trainer.epochs`` without validation (the final protocol of the papers and of ``recsys bench``).
    - ``callbacks``: handed to :meth:`Trainer.fit`, called with every evaluation row (a True answer stops training).
    - ``evaluate_test``: False never touches ``split.test`` (hyperparameter search selects on validation only):
      ``result.test`` is empty and no popularity baseline is scored.

    Torch's RNG is seeded with ``seed`` inside the run and restored after it.
    """
    started = time.perf_counter()
    if fit_on not in ("train", "train+valid"):
        raise ConfigError(f"fit_on must be 'train' or 'train+valid', got {fit_on!r}", where="fit_on")
    trainer = trainer if trainer is not None else Trainer()
    evaluator = evaluator if evaluator is not None else RankingEvaluator()
    run_dir = Path(run_dir) if run_dir is not None else None
    if engine is not None:  # compiled engine code (numba) loads while the data is split
        warm_up_in_background(engine, resolve_device(trainer.device, where="trainer.device"))
    with _seeded(seed):
        split = split(data) if callable(split) else split
        _check_parts(data, split, ("train", "test") if evaluate_test else ("train",))
        log.info("%s | train %d, valid %d, test %s interactions", data, split.train.num_interactions,
                 split.valid.num_interactions, split.test.num_interactions if evaluate_test else "(not read)")
        history = split.train.concat(split.valid)  # what is known at test time
        fit_data = split.train if fit_on == "train" else history
        if features is not None:  # a copy: the caller's pipeline stays as it was (unfitted, or fitted on other data)
            features = copy.deepcopy(features).fit(fit_data)
        available = {"num_users": data.num_users, "num_items": data.num_items, "features": features}
        available = {k: v for k, v in available.items() if v is not None}
        if not hasattr(evaluator, "evaluate_model"):  # a factory that wants the fitted features
            evaluator, _ = _build(evaluator, available)
        check_monitor(trainer, evaluator)
        net, kwargs = _build(model, available)
        check_compatible(net, evaluator)
        if run_dir is not None:
            model_spec(net, kwargs)  # fails now, not after training, if the run could not be saved
        if item_text_init:
            from recsys.training.text_init import init_item_table_from_text

            init_item_table_from_text(net, data, str(item_text_init))
        device = resolve_device(trainer.device, where="trainer.device")
        net.to(device)
        generator = torch.Generator().manual_seed(seed)
        selects = fit_on == "train" and split.valid.num_interactions > 0
        if fit_on == "train" and not selects:
            log.info("no validation interactions (a cold-start split?): fitting for the epoch budget, no epoch selection")
        validate = (lambda m: evaluator.evaluate_model(m, split.train, split.valid)) if selects else None
        fit_started = time.perf_counter()
        net.prepare(fit_data, generator)
        if engine is not None:
            engine.fit(net, fit_data, device=device, generator=generator, progress=trainer.progress)
        prepare_seconds = time.perf_counter() - fit_started
        # what the model decides about its batches (SASRec: max_len, negatives) where the caller left it open
        batch_iter = _build(batches, {**net.batch_arguments(), "data": fit_data, **available})[0] if batches is not None else None
        result = trainer.fit(net, batch_iter, optimizer, validate=validate, run_dir=run_dir, resume_from=resume_from,
                             callbacks=callbacks)
        test_per_user: dict[str, torch.Tensor] | None = None
        test: dict[str, float] = {}  # stays empty without evaluate_test: split.test is never read
        if evaluate_test and "per_user" in inspect.signature(evaluator.evaluate_model).parameters:
            test_per_user = {}
            test = evaluator.evaluate_model(net, history, split.test, per_user=test_per_user)
        elif evaluate_test:
            test = evaluator.evaluate_model(net, history, split.test)
        popularity = None
        if evaluate_test and compare_to_popularity and isinstance(evaluator, RankingEvaluator) and not isinstance(net, Popularity):
            baseline = Popularity(data.num_items)
            baseline.prepare(history, generator)
            popularity = evaluator.evaluate_model(baseline.to(device), history, split.test)
    out = RunResult(model=net, dataset=data.name, num_users=data.num_users, num_items=data.num_items,
                    best_epoch=result.best_epoch, train_seconds=prepare_seconds + result.train_seconds,
                    total_seconds=time.perf_counter() - started, valid=result.best_metrics, test=test,
                    history=history, popularity_test=popularity, run_dir=run_dir, epochs=result.history,
                    fit_interactions=fit_data.num_interactions, test_per_user=test_per_user, features=features)
    if run_dir is not None and is_main_process():
        save_run(run_dir, net, kwargs, history=history, features=features, metrics=out.summary(),
                 targets={"valid": split.valid, **({"test": split.test} if evaluate_test else {})}, evaluator=evaluator)
        atomic_write_text(run_dir / "results.md", out.table() + "\n")
        if test_per_user:
            frame = pl.DataFrame({name: values.numpy() for name, values in test_per_user.items()})
            atomic_write(run_dir / "per_user_test.parquet", frame.write_parquet)
        if callable(getattr(net, "item_embeddings", None)) and not isinstance(history, CTRTable):  # keyed by original item id
            out.recommender.item_embeddings().to_parquet(run_dir / "item_embeddings.parquet")
    return out
