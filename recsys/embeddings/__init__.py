"""Embedding tables: field configs, fused collections, sparse optimizers, memory reducers, keyed tables and vectors."""

from recsys.embeddings.collection import EmbeddingCollection
from recsys.embeddings.config import EmbeddingField
from recsys.embeddings.hashing import CollisionReport, collision_report, hash_ids, hash_strings
from recsys.embeddings.jagged import KeyedJagged
from recsys.embeddings.keyed_vectors import KeyedVectors
from recsys.embeddings.mixed_dim import MixedDimEmbeddingCollection, power_law_dims
from recsys.embeddings.optimizer import CombinedOptimizer, build_optimizer
from recsys.embeddings.qr import QREmbedding
from recsys.embeddings.sparse_optim import RowWiseAdagrad, SparseAdam, SparseSGD, is_sparse_param, mark_sparse, state_bytes
from recsys.embeddings.specs import embedding_fields
from recsys.embeddings.table import KeyedEmbedding

__all__ = [
    "CollisionReport",
    "CombinedOptimizer",
    "EmbeddingCollection",
    "EmbeddingField",
    "KeyedEmbedding",
    "KeyedJagged",
    "KeyedVectors",
    "MixedDimEmbeddingCollection",
    "QREmbedding",
    "RowWiseAdagrad",
    "SparseAdam",
    "SparseSGD",
    "build_optimizer",
    "collision_report",
    "embedding_fields",
    "hash_ids",
    "hash_strings",
    "is_sparse_param",
    "mark_sparse",
    "power_law_dims",
    "state_bytes",
]
