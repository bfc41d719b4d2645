"""Estimators with the APIs users already know (gensim's Word2Vec, implicit's ALS/BPR, scikit-learn transformers):
facades that compose a model and a `recsys.training` engine; they train nothing themselves."""

from recsys.embeddings.keyed_vectors import KeyedVectors  # re-exported: the public name predates its move
from recsys.estimators.entity_embedding import EntityEmbeddingEncoder
from recsys.estimators.implicit_api import AlternatingLeastSquares, BayesianPersonalizedRanking, EASERecommender  # BPR: bpr.py's + implicit's methods
from recsys.estimators.word2vec import Word2Vec

__all__ = ["AlternatingLeastSquares", "BayesianPersonalizedRanking", "EASERecommender", "EntityEmbeddingEncoder", "KeyedVectors",
           "Word2Vec"]
