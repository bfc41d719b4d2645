"""Raw files -> id-mapped interactions, filters, splits, negative samplers and training batches."""

from recsys.data.batches import PairwiseBatches
from recsys.data.filters import binarize, deduplicate, k_core
from recsys.data.frame import from_frame
from recsys.data.interactions import Interactions
from recsys.data.load import load_dataset
from recsys.data.pointwise_batches import RatingBatches
from recsys.data.sampling import NegativeSampler
from recsys.data.sequences_file import load_sequence_file
from recsys.data.splits import Split, leave_one_out, random_split, temporal_split
from recsys.data.vocabulary import Vocabulary

__all__ = [
    "Interactions",
    "NegativeSampler",
    "PairwiseBatches",
    "RatingBatches",
    "Split",
    "Vocabulary",
    "binarize",
    "deduplicate",
    "from_frame",
    "k_core",
    "leave_one_out",
    "load_dataset",
    "load_sequence_file",
    "random_split",
    "temporal_split",
]
