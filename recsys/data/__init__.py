"""Raw files -> id-mapped interactions, filters, splits, negative samplers and training batches."""

from recsys.data.batches import PairwiseBatches
from recsys.data.ctr_files import CTRTable, field_features, file_split, load_ctr_files
from recsys.data.ctr_batches import CTRBatches, FeatureBatches
from recsys.data.features import (CategoricalFeature, FeaturePipeline, MultiCategoricalFeature, NumericFeature,
                                   SequenceFeature)
from recsys.data.fields import EncodedFeatures, FieldSpec, ctr_frame
from recsys.data.filters import binarize, deduplicate, k_core
from recsys.data.frame import from_frame
from recsys.data.ids import ITEM_SHIFT, PADDING_INDEX, mask_index
from recsys.data.interactions import Interactions
from recsys.data.libsvm import read_libsvm
from recsys.data.load import load_dataset
from recsys.data.pointwise_batches import RatingBatches
from recsys.data.sampling import NegativeSampler
from recsys.data.sequence_batches import ClozeBatches, NextItemBatches
from recsys.data.sequences_file import load_sequence_file
from recsys.data.splits import Split, leave_one_out, random_split, temporal_split
from recsys.data.vocabulary import Vocabulary

__all__ = [
    "ITEM_SHIFT",
    "PADDING_INDEX",
    "ctr_frame",
    "mask_index",
    "ClozeBatches",
    "NextItemBatches",
    "CTRBatches",
    "CTRTable",
    "CategoricalFeature",
    "EncodedFeatures",
    "FeatureBatches",
    "FeaturePipeline",
    "FieldSpec",
    "MultiCategoricalFeature",
    "SequenceFeature",
    "NumericFeature",
    "read_libsvm",
    "Interactions",
    "NegativeSampler",
    "PairwiseBatches",
    "RatingBatches",
    "Split",
    "Vocabulary",
    "binarize",
    "deduplicate",
    "field_features",
    "file_split",
    "from_frame",
    "k_core",
    "leave_one_out",
    "load_ctr_files",
    "load_dataset",
    "load_sequence_file",
    "random_split",
    "temporal_split",
]
