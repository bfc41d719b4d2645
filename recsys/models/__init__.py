"""Recommender models: one model per file, all implementing :class:`Recommender`."""

from recsys.models.base import Recommender
from recsys.models.bpr import BPRMF
from recsys.models.popularity import Popularity

__all__ = ["BPRMF", "Popularity", "Recommender"]
