"""Reusable neural-network blocks (no model names): Transformer blocks for sequence and text encoders."""

from recsys.nn.transformer import (
    FeedForward,
    MultiHeadSelfAttention,
    PositionalEmbedding,
    TransformerBlock,
    TransformerEncoder,
    attention_bias,
)

__all__ = [
    "FeedForward",
    "MultiHeadSelfAttention",
    "PositionalEmbedding",
    "TransformerBlock",
    "TransformerEncoder",
    "attention_bias",
]
