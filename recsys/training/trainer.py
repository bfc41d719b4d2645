"""The Trainer: epochs of gradient descent on any :class:`Recommender`, with validation, early
stopping, checkpoints, resuming, mixed precision and data-parallel runs under ``torchrun``."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from recsys.errors import ConfigError, DataError, RecsysError
from recsys.models.base import Recommender
from recsys.runtime import atomic_write, progress_bar
from recsys.training import distributed as ddp
from recsys.training.checkpoint import (
    RunState,
    load_checkpoint,
    link_checkpoint,
    remove_stale_temp_files,
    resume_training,
    save_checkpoint,
    training_state,
)
from recsys.training.cpu_memory import keep_freed_memory
from recsys.training.device import resolve_device
from recsys.training.loggers import MetricLogger, make_loggers
from recsys.training.monitor import Monitor
from recsys.training.threads import resolve_threads, torch_threads

log = logging.getLogger(__name__)

Batch = dict[str, Tensor]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
#: Called with each evaluation row (``epoch``, ``loss``, ``seconds``, the validation metrics); True stops training.
EvalCallback = Callable[[dict[str, float]], "bool | None"]


class NonFiniteLossError(RecsysError, FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns.

    Epochs count completed epochs (0 = untrained); ``history`` has one row per evaluation
    (``epoch``, ``loss``, ``seconds`` and the validation metrics); ``best_metrics`` is the best row;
    ``checkpoint`` is ``run_dir/checkpoint.pt`` when a run directory was given.
    """

    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    checkpoint: Path | None
    stopped_early: bool
    train_seconds: float


def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    """Scale gradients so their global L2 norm is at most ``max_norm``; returns the norm before.

    Unlike ``torch.nn.utils.clip_grad_norm_`` it also handles sparse gradients
    (``nn.Embedding(sparse=True)``), which it coalesces in place.
    """
    grads = []
    for param in parameters:
        if param.grad is None:
            continue
        if param.grad.is_sparse:
            param.grad = param.grad.coalesce()
            grads.append(param.grad._values())
        else:
            grads.append(param.grad)
    if not grads:
        return torch.tensor(0.0)
    norms = torch.stack([torch.linalg.vector_norm(g.detach(), dtype=torch.float32) for g in grads])
    total = torch.linalg.vector_norm(norms)
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for grad in grads:
        grad.detach().mul_(scale.to(grad.dtype))
    return total


class LossObjective(Recommender):
    """The Trainer's contract (``loss(batch)``, ``trainable``, ``device``) around any module with a ``loss(batch)``
    that ranks no items (the MLM, causal-LM and fine-tuning recipes); the module is ``.module``.

    >>> objective = LossObjective(nn.Linear(2, 1))
    >>> objective.module.loss = lambda batch: batch["x"].sum()
    >>> float(objective.loss({"x": torch.ones(3)}))
    3.0
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        return self.module.loss(batch)


class _LossTracker:
    """Sums per-batch losses on the device and checks them for NaN/inf every ``sync_every`` batches,
    so CUDA does not synchronize on every step."""

    def __init__(self, epoch: int, sync_every: int) -> None:
        self.epoch, self.sync_every = epoch, sync_every
        self.pending: list[Tensor] = []
        self.first_pending = 0
        self.total, self.count = 0.0, 0

    def add(self, loss: Tensor) -> bool:
        """Record one batch's loss; True when it just checked (a good moment to refresh the bar)."""
        self.pending.append(loss.detach().float())
        if len(self.pending) >= self.sync_every:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        if not self.pending:
            return
        values = torch.stack(self.pending).cpu()
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            batch = self.first_pending + int(bad[0])
            raise NonFiniteLossError(
                f"training loss is {values[bad[0]].item()}",
                where=f"epoch {self.epoch}, batch {batch}",
                fix="lower the learning rate, set trainer.grad_clip_norm (e.g. 1.0), "
                "or check the batch for bad values",
            )
        self.total += values.double().sum().item()
        self.count += len(values)
        self.first_pending += len(values)
        self.pending.clear()

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan


def _batch_size(batch: Batch) -> int:
    for value in batch.values():
        if isinstance(value, Tensor):
            return value.shape[0] if value.dim() else 1
    return 0


class Trainer:
    """Trains a :class:`Recommender` whose ``forward`` is its loss; knows no model by name.

    ``mixed_precision`` autocasts to bf16 (fp16 with a grad scaler where bf16 is missing) on CUDA;
    ``cpu_bf16`` autocasts to bf16 on CPU, which pays off on CPUs with AMX or AVX512-BF16.
    ``cpu_keep_memory`` (CPU training, glibc): freed activations are kept for the next step instead of being
    returned to the OS and page-faulted back (:func:`~recsys.training.cpu_memory.keep_freed_memory`,
    process-wide and lasting, so opt-in; the CTR experiments turn it on); DeepFM trains ~20% faster on 2 cores.
    ``threads``: torch's CPU threads during ``fit`` (restored after); ``None`` = the CPUs this process may
    use less the other runnable tasks (:func:`~recsys.training.threads.auto_threads`).
    ``checkpoint_every_s``: with a ``run_dir``, ``last.pt`` (the state to resume from) is rewritten after an epoch
    that improved (as a hard link to ``checkpoint.pt``, written once), after the last epoch, and otherwise when this
    many seconds passed since it was last written (0 = after every epoch); a killed run loses at most that much.
    ``monitor`` is a validation metric or a weighted sum of them (``"auc-logloss"``, :class:`~recsys.training.monitor.Monitor`),
    compared under ``mode``; an epoch counts as better when it beats the best by more than ``min_delta``.
    ``epochs=None`` trains until ``patience`` evaluations bring no improvement (it needs validation and a patience).

    >>> import functools
    >>> class Mean(Recommender):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = nn.Parameter(torch.zeros(1))
    ...     def loss(self, batch):
    ...         return ((self.w - batch["y"]) ** 2).mean()
    >>> batches = [{"y": torch.full((8,), 3.0)}] * 4
    >>> result = Trainer(epochs=30, device="cpu", progress=False).fit(
    ...     Mean(), batches, functools.partial(torch.optim.SGD, lr=0.1))
    >>> round(result.history[-1]["loss"], 4), result.best_epoch
    (0.0, 30)
    """

    def __init__(
        self,
        epochs: int | None = 20,
        device: str = "auto",
        mixed_precision: bool = True,
        cpu_bf16: bool = False,
        cpu_keep_memory: bool = False,
        grad_clip_norm: float | None = None,
        monitor: str = "ndcg@10",
        mode: str = "max",
        patience: int | None = 5,
        min_delta: float = 0.0,
        eval_every: int = 1,
        progress: bool = True,
        tensorboard: bool = True,
        threads: int | None = None,
        checkpoint_every_s: float = 30.0,
    ) -> None:
        for name, value, ok in [
            ("epochs", epochs, epochs is None and patience is not None or epochs is not None and epochs >= 0),
            ("mode", mode, mode in ("max", "min")),
            ("patience", patience, patience is None or patience >= 1),
            ("min_delta", min_delta, min_delta >= 0),
            ("eval_every", eval_every, eval_every >= 1),
            ("grad_clip_norm", grad_clip_norm, grad_clip_norm is None or grad_clip_norm > 0),
            ("threads", threads, threads is None or (type(threads) is int and threads >= 1)),
            ("checkpoint_every_s", checkpoint_every_s, checkpoint_every_s >= 0),
        ]:
            if not ok:
                raise ConfigError(
                    f"invalid trainer.{name}: {value!r}",
                    where=f"trainer.{name}",
                    fix="mode is 'max' or 'min'; epochs >= 0, or null with a patience (train until it stops); "
                    "patience >= 1 or null; min_delta >= 0; eval_every >= 1; grad_clip_norm > 0 or null; threads >= 1 or null; "
                    "checkpoint_every_s >= 0",
                )
        self._monitor = Monitor.parse(monitor)
        self.epochs = epochs
        self.device = device
        self.mixed_precision = mixed_precision
        self.cpu_bf16 = cpu_bf16
        self.cpu_keep_memory = cpu_keep_memory
        self.grad_clip_norm = grad_clip_norm
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.min_delta = min_delta
        self.eval_every = eval_every
        self.progress = progress
        self.tensorboard = tensorboard
        self.threads = threads
        self.checkpoint_every_s = checkpoint_every_s

    def fit(
        self,
        model: Recommender,
        batches: Iterable[Batch] | None,
        optimizer: OptimizerFactory | torch.optim.Optimizer | None,
        *,
        validate: Callable[[Recommender], dict[str, float]] | None = None,
        run_dir: str | Path | None = None,
        resume_from: str | Path | None = None,
        callbacks: Sequence[EvalCallback] = (),
    ) -> FitResult:
        """Train ``model`` on ``batches`` for ``epochs`` epochs; the model ends holding its best weights.

        ``batches`` is re-iterated every epoch (its ``set_epoch(i)`` is called first with the
        0-based epoch index if it has one); ``optimizer`` is a factory called with the model's
        parameters (e.g. ``functools.partial(torch.optim.Adam, lr=1e-3)``) or a built optimizer;
        ``validate(model)`` returns metrics including ``monitor``. With ``run_dir``, writes
        ``metrics.csv``, ``tb/`` (if TensorBoard is installed), ``checkpoint.pt`` (best) and
        ``last.pt`` (for ``resume_from``; see ``checkpoint_every_s``), after removing temporary files a killed write left there.
        Torch uses ``threads`` CPU threads meanwhile.

        ``callbacks``: each is called as ``callback(row)`` after every evaluation (on the main process), with
        the row just added to the history; one that returns True stops training after this epoch, as early
        stopping does (the model keeps its best weights, ``stopped_early`` is True). Hyperparameter search
        prunes trials this way (``recsys tune``). A model without epochs gets one call, whose answer is moot.
        """
        with torch_threads(resolve_threads(self.threads)):
            return self._fit(model, batches, optimizer, validate=validate, run_dir=run_dir, resume_from=resume_from,
                             callbacks=tuple(callbacks))

    def _fit(
        self,
        model: Recommender,
        batches: Iterable[Batch] | None,
        optimizer: OptimizerFactory | torch.optim.Optimizer | None,
        *,
        validate: Callable[[Recommender], dict[str, float]] | None,
        run_dir: str | Path | None,
        resume_from: str | Path | None,
        callbacks: tuple[EvalCallback, ...] = (),
    ) -> FitResult:
        device = ddp.init_distributed(resolve_device(self.device))
        if device.type == "cpu" and self.cpu_keep_memory:
            keep_freed_memory()
        model.to(device)
        run_dir = Path(run_dir) if run_dir is not None else None
        if run_dir is not None and ddp.is_main_process():
            remove_stale_temp_files(run_dir)
        if not model.trainable or (batches is None and optimizer is None):  # closed-form, or fitted by an engine
            return self._fit_untrainable(model, validate, run_dir, callbacks)
        if batches is None or optimizer is None:
            raise ConfigError(
                f"{type(model).__name__} is trained by gradient descent but got no "
                + ("batches" if batches is None else "optimizer"),
                where="Trainer.fit",
                fix="pass a batch iterable and an optimizer (factory) to fit",
            )
        if self.epochs is None and validate is None:
            raise ConfigError(
                "trainer.epochs=null trains until the validation metric stops improving, but there is no validation",
                where="trainer.epochs", fix="set trainer.epochs (fit_on=train+valid and splits without a validation part "
                "train for a fixed number of epochs)")
        if not (hasattr(optimizer, "step") and hasattr(optimizer, "zero_grad")):
            optimizer = optimizer(model.parameters())
        # autocast: fp16/bf16 on CUDA with mixed_precision; bf16 on CPU with cpu_bf16 (fast with AMX / AVX512-BF16)
        amp = (self.mixed_precision and device.type == "cuda") or (self.cpu_bf16 and device.type == "cpu")
        amp_dtype = torch.bfloat16 if device.type == "cpu" or (amp and torch.cuda.is_bf16_supported()) else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda" and amp_dtype == torch.float16)
        run = RunState()
        if resume_from is not None:
            run = resume_training(Path(resume_from), model, optimizer, scaler, batches)
        main = ddp.is_main_process()
        if main and run_dir is not None and resume_from is not None:
            self._adopt_best_checkpoint(run, run_dir, model, optimizer, scaler, batches)
        net = ddp.wrap_model(model, device)
        local_batches = ddp.shard_batches(batches)
        loggers = make_loggers(run_dir, tensorboard=self.tensorboard, history=run.history) if main else []
        best_state: dict[str, Tensor] | None = None
        stopped_early, asked_to_stop, train_seconds = False, False, 0.0
        last_saved = time.monotonic()
        try:
            for index in range(run.epoch, self.epochs) if self.epochs is not None else itertools.count(run.epoch):
                if self.patience is not None and run.evals_since_best >= self.patience:
                    stopped_early = True
                    break
                if hasattr(local_batches, "set_epoch"):
                    local_batches.set_epoch(index)
                loss, seconds = self._train_epoch(
                    net, local_batches, optimizer, scaler, index, device, amp, amp_dtype
                )
                loss = ddp.mean_across_ranks(loss, device)
                train_seconds += seconds
                run.epoch = epoch = index + 1
                improved = False
                if epoch % self.eval_every == 0 or epoch == self.epochs:
                    if main:
                        row = {"epoch": epoch, "loss": loss, "seconds": seconds}
                        if validate is not None:
                            row.update(self._validate(model, validate))
                        improved = self._record(run, row, validate is not None, loggers)
                        if improved and run_dir is not None:
                            run.best_checkpoint = str(run_dir / "checkpoint.pt")
                            save_checkpoint(
                                run_dir / "checkpoint.pt",
                                training_state(run, model, optimizer, scaler, batches),
                            )
                        elif improved and validate is not None:
                            best_state = {
                                k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                            }
                        asked_to_stop = any([bool(callback(dict(row))) for callback in callbacks])  # call every one
                    stopped_early = ddp.broadcast_object(
                        asked_to_stop
                        or (self.patience is not None and validate is not None and run.evals_since_best >= self.patience)
                    )
                if main and run_dir is not None:  # last.pt: never older than checkpoint.pt, at least every checkpoint_every_s
                    if improved:  # checkpoint.pt holds this very state
                        link_checkpoint(run_dir / "checkpoint.pt", run_dir / "last.pt")
                        last_saved = time.monotonic()
                    elif (stopped_early or epoch == self.epochs
                          or time.monotonic() - last_saved >= self.checkpoint_every_s):
                        save_checkpoint(run_dir / "last.pt", training_state(run, model, optimizer, scaler, batches))
                        last_saved = time.monotonic()
                if stopped_early:
                    if asked_to_stop:
                        log.info("stopping after epoch %d: a callback asked to", epoch)
                    else:
                        log.info(
                            "early stopping after epoch %d: %s did not improve for %d evaluations",
                            epoch,
                            self.monitor,
                            run.evals_since_best,
                        )
                    break
        finally:
            for logger in loggers:
                logger.close()
        if main:
            self._restore_best(model, run, best_state)
        ddp.broadcast_module(model)
        run = ddp.broadcast_object(run)
        return FitResult(
            best_epoch=run.best_epoch,
            best_metrics=dict(run.best_metrics),
            history=[dict(row) for row in run.history],
            checkpoint=Path(run.best_checkpoint) if run.best_checkpoint else None,
            stopped_early=stopped_early,
            train_seconds=train_seconds,
        )

    def _train_epoch(
        self,
        net: nn.Module,
        batches: Iterable[Batch],
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        index: int,
        device: torch.device,
        amp: bool,
        amp_dtype: torch.dtype,
    ) -> tuple[float, float]:
        """One pass over ``batches``; returns the mean loss and the seconds it took."""
        net.train()
        tracker = _LossTracker(epoch=index + 1, sync_every=32 if device.type == "cuda" else 1)
        try:
            total: int | None = len(batches)  # type: ignore[arg-type]
        except TypeError:
            total = None
        bar = progress_bar(
            batches,
            total=total,
            desc=f"epoch {index + 1}/{self.epochs}" if self.epochs is not None else f"epoch {index + 1}",
            leave=False,
            dynamic_ncols=True,
            disable=not (self.progress and ddp.is_main_process()),
        )
        start, samples = time.perf_counter(), 0
        params = [p for p in net.parameters() if p.requires_grad]
        outer_autocast = not amp and torch.is_autocast_enabled(device.type)  # e.g. bfloat16 on CPU, opened by the caller
        for batch in bar:
            batch = {
                k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()
            }
            samples += _batch_size(batch)
            # no autocast context without amp, so one the caller opened (e.g. bfloat16 on CPU) stays in force
            with torch.autocast(device.type, dtype=amp_dtype) if amp else contextlib.nullcontext():
                loss = net(batch)
            checked = tracker.add(loss)
            scaler.scale(loss).backward()
            if self.grad_clip_norm is not None:
                scaler.unscale_(optimizer)
                clip_grad_norm(params, self.grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if outer_autocast:  # the weights just changed: drop the low-precision copies autocast cached
                torch.clear_autocast_cache()
            if checked and not bar.disable:
                rate = samples / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(loss=f"{tracker.mean:.4f}", samples_s=f"{rate:,.0f}", refresh=False)
        tracker.flush()
        bar.close()
        if tracker.count == 0:
            raise DataError(
                f"the batch iterable yielded no batches in epoch {index + 1}",
                where=f"rank {ddp.rank()} of {ddp.world_size()}",
                fix="check that the training split is not empty and has at least one batch per process",
            )
        return tracker.mean, time.perf_counter() - start

    def _validate(
        self, model: Recommender, validate: Callable[[Recommender], dict[str, float]]
    ) -> dict[str, float]:
        model.eval()
        try:
            with torch.no_grad():
                metrics = validate(model)
        finally:
            model.train()
        return {key: float(value) for key, value in metrics.items()}

    def _record(
        self, run: RunState, row: dict[str, float], validated: bool, loggers: list[MetricLogger]
    ) -> bool:
        """Append ``row`` to the history and loggers; update best and patience; True if it improved."""
        missing = [name for name in self._monitor.names if name not in row]
        if validated and missing:
            raise ConfigError(
                f"monitored metric {missing[0]!r} is not among the validation metrics",
                where="trainer.monitor",
                fix=f"set trainer.monitor to one of (or a sum of): {', '.join(sorted(k for k in row if k != 'epoch'))}",
            )
        if validated and self._monitor.combined:
            row[self.monitor] = self._monitor.value(row)  # the compared score, logged with the metrics
        run.history.append(row)
        for logger in loggers:
            logger.log(row, step=int(row["epoch"]))
        log.info(
            "epoch %d: %s", row["epoch"], ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
        )
        if not validated:
            improved = True
        else:
            value, best = self._monitor.value(row), run.best_value
            improved = not math.isnan(value) and (
                best is None or (value > best + self.min_delta if self.mode == "max" else value < best - self.min_delta)
            )
            if improved:
                run.best_value = value
        if improved:
            run.best_epoch, run.best_metrics, run.evals_since_best = (
                int(row["epoch"]),
                dict(row),
                0,
            )
        else:
            run.evals_since_best += 1
        return improved

    def _adopt_best_checkpoint(
        self,
        run: RunState,
        run_dir: Path,
        model: Recommender,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        batches: Iterable[Batch],
    ) -> None:
        """A resumed run keeps its best weights in its own ``run_dir/checkpoint.pt``: copied from the run it
        resumes (whose directory it never writes to), or saved now when the resumed weights are the best."""
        target = run_dir / "checkpoint.pt"
        source = Path(run.best_checkpoint) if run.best_checkpoint else None
        if source is not None and source.resolve() == target.resolve():
            return
        if source is not None and source.is_file():
            with source.open("rb") as src:
                atomic_write(target, lambda file: file.write(src.read()))
        elif run.best_epoch == run.epoch and run.epoch > 0:
            run.best_checkpoint = str(target)
            save_checkpoint(target, training_state(run, model, optimizer, scaler, batches))
            return
        else:
            log.warning("best weights of epoch %d not found at %s", run.best_epoch, source)
            return
        run.best_checkpoint = str(target)

    def _restore_best(self, model: Recommender, run: RunState, best_state: dict[str, Tensor] | None) -> None:
        if run.best_epoch == run.epoch:
            return  # the current weights are the best
        if best_state is not None:
            model.load_state_dict(best_state)
        elif run.best_checkpoint and Path(run.best_checkpoint).is_file():
            model.load_state_dict(load_checkpoint(run.best_checkpoint, map_location=model.device)["model"])
        else:
            log.warning(
                "best weights (epoch %d) not found; the model keeps the weights of epoch %d",
                run.best_epoch,
                run.epoch,
            )
            return
        log.info("restored the best weights, from epoch %d", run.best_epoch)

    def _fit_untrainable(
        self,
        model: Recommender,
        validate: Callable[[Recommender], dict[str, float]] | None,
        run_dir: Path | None,
        callbacks: tuple[EvalCallback, ...] = (),
    ) -> FitResult:
        """Models without a loss (popularity, closed-form) or fitted by an engine: no epochs, one validation."""
        row: dict[str, float] = {"epoch": 0, "seconds": 0.0}
        checkpoint = run_dir / "checkpoint.pt" if run_dir is not None else None
        if ddp.is_main_process():
            if validate is not None:
                row.update(self._validate(model, validate))
            for logger in make_loggers(run_dir, tensorboard=self.tensorboard):
                logger.log(row, step=0)
                logger.close()
            if checkpoint is not None:
                state = {"model": model.state_dict(), **asdict(RunState(best_metrics=row, history=[row]))}
                save_checkpoint(checkpoint, state)
            for callback in callbacks:
                callback(dict(row))
        row = ddp.broadcast_object(row)
        return FitResult(
            best_epoch=0,
            best_metrics=dict(row),
            history=[row],
            checkpoint=checkpoint,
            stopped_early=False,
            train_seconds=0.0,
        )
