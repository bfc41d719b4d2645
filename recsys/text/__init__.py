"""Text encoders for item content: a BERT-style encoder on the shared Transformer blocks, WordPiece
tokenization, masked-language-model pretraining, Hugging Face checkpoint loading, item text tables
and cold-start evaluation.

Modules are imported by full path (``recsys.text.encoder``, ``recsys.text.checkpoint``, ...); this
package does no work at import time and needs the ``text`` extra (``tokenizers``, ``safetensors``)
only for tokenization and checkpoint files.
"""
