"""Text encoders for item content, a leaf beside ``recsys.models``: a BERT-style encoder on the shared
Transformer blocks, WordPiece tokenization, Hugging Face checkpoint loading and saving, texts -> vectors
(``encode``), the masked- and causal-language-model pieces (``mlm`` with NSP, ``causal_lm``) and
fine-tuning heads (``heads``).

It imports only ``recsys.nn``, ``recsys.embeddings``, ``recsys.data``, ``recsys.errors`` and
``recsys.runtime``. What uses it lives elsewhere: item texts from item features in
``recsys.data.item_text``, MLM and causal-LM pretraining in ``recsys.training.mlm`` and
``recsys.training.causal_lm``, fine-tuning in ``recsys.training.finetune``, content vectors in
``recsys.training.text_vectors``, text-initialized item tables in ``recsys.training.text_init`` and the
cold-start protocol in ``recsys.evaluation.cold_start``.

Modules are imported by full path (``recsys.text.encoder``, ``recsys.text.checkpoint``, ...); this
package does no work at import time and needs the ``text`` extra (``tokenizers``, ``safetensors``)
only for tokenization and checkpoint files.
"""
