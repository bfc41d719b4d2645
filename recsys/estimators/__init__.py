"""Estimators with the APIs users already know (gensim's Word2Vec, implicit's BPR, scikit-learn transformers):
facades that compose a model and a `recsys.training` engine; they train nothing themselves."""

from recsys.estimators.bpr import BayesianPersonalizedRanking
from recsys.estimators.entity_embedding import EntityEmbeddingEncoder
from recsys.estimators.keyed_vectors import KeyedVectors
from recsys.estimators.word2vec import Word2Vec

__all__ = ["BayesianPersonalizedRanking", "EntityEmbeddingEncoder", "KeyedVectors", "Word2Vec"]
