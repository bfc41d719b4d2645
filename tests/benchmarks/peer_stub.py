"""A peer for the grid tests: a real fitting engine with a fixed behaviour (every user gets the lowest item indices)."""

from __future__ import annotations

import torch


class LowestIndexFirst:
    """Sets a BPRMF container so that item ``i`` scores ``-i`` for every user, whatever the data."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def fit(self, model, train, *, device, generator, progress=True) -> None:
        with torch.no_grad():
            model.user_embedding.weight.zero_()
            model.user_embedding.weight[:, 0] = 1.0
            model.item_embedding.weight.zero_()
            model.item_embedding.weight[:, 0] = self.offset - torch.arange(model.num_items, dtype=torch.float32)
            model.item_bias.weight.zero_()
