"""Seed every global random number generator; called by the CLI only, never by the library."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy, torch and every CUDA device with ``seed``.

    >>> seed_everything(0); a = torch.rand(1); seed_everything(0); bool(torch.rand(1) == a)
    True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
