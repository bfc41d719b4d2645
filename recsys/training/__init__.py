"""Training: the Trainer, the other fitting engines (Hogwild SGNS and BPR, pretrained towers), devices,
checkpoints, metric loggers and data-parallel helpers."""

from recsys.training.bpr_hogwild import BPRHogwild
from recsys.training.checkpoint import load_checkpoint, save_checkpoint
from recsys.training.device import resolve_device
from recsys.training.distributed import destroy_distributed, is_distributed, is_main_process, rank, world_size
from recsys.training.engine import FitEngine
from recsys.training.fold_in import fold_in, fold_in_scores
from recsys.training.loggers import CSVLogger, TensorBoardLogger
from recsys.training.pretrained import NeuMFPretrained
from recsys.training.seed import seed_everything
from recsys.training.sgns import SGNSEngine
from recsys.training.trainer import FitResult, NonFiniteLossError, Trainer, clip_grad_norm

__all__ = [
    "BPRHogwild",
    "CSVLogger",
    "FitEngine",
    "FitResult",
    "NeuMFPretrained",
    "NonFiniteLossError",
    "SGNSEngine",
    "TensorBoardLogger",
    "Trainer",
    "clip_grad_norm",
    "destroy_distributed",
    "fold_in",
    "fold_in_scores",
    "is_distributed",
    "is_main_process",
    "load_checkpoint",
    "rank",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "world_size",
]
