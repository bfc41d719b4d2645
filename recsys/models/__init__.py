"""Recommender models: one model per file, all implementing :class:`Recommender`."""

from recsys.models.als import ALS
from recsys.models.base import Recommender
from recsys.models.biased_mf import BiasedMF
from recsys.models.bert4rec import BERT4Rec
from recsys.models.bpr import BPRMF
from recsys.models.content import ContentRecommender
from recsys.models.deepfm import DeepFM
from recsys.models.din import DIN
from recsys.models.ease import EASE
from recsys.models.fm import FM
from recsys.models.gru4rec import GRU4Rec
from recsys.models.item2vec import Item2Vec
from recsys.models.logistic import LogisticRegression
from recsys.models.neumf import NeuMF
from recsys.models.popularity import Popularity
from recsys.models.sasrec import SASRec

__all__ = ["ALS", "BERT4Rec", "BPRMF", "ContentRecommender", "SASRec", "EASE", "FM", "GRU4Rec", "BiasedMF", "DeepFM", "DIN", "Item2Vec", "LogisticRegression", "NeuMF", "Popularity", "Recommender"]
