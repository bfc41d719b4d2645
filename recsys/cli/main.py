"""``recsys`` / ``python -m recsys``: ``train [overrides]`` (the default), ``compare``, ``report``, ``plot``, ``bench NAME``."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "data": "recsys.benchmarks.data_pipeline",
    "embeddings": "recsys.benchmarks.embeddings",
    "cf": "recsys.benchmarks.cf",
    "cf-cv": "recsys.benchmarks.cross_validation",
    "ctr": "recsys.benchmarks.ctr",
    "din": "recsys.benchmarks.din",
    "item2vec": "recsys.benchmarks.item2vec",
    "sequential": "recsys.benchmarks.sequential",
    "text": "recsys.benchmarks.text",
    "finetune": "recsys.benchmarks.finetune",
    "entity-embedding": "recsys.benchmarks.entity_embedding",
    "recommend": "recsys.benchmarks.recommend",
    "readme": "recsys.benchmarks.readme",
    "evaluator": "recsys.benchmarks.evaluator",
    "startup": "recsys.benchmarks.startup",
    "scaling": "recsys.benchmarks.scaling",
}

RUN_COMMANDS = ("recommend", "similar", "export")

USAGE = """usage: recsys [train] [hydra overrides ...]     train and evaluate (see `recsys train --help`)
       recsys recommend|similar|export RUN_DIR [options]   use a saved run (see `recsys recommend --help`)
       recsys evaluate RUN_DIR [--split valid|test] [--data FILE]   score a saved run with its evaluator
       recsys compare GRID [GRID ...] [options]   run a benchmark grid of conf/compare/ into a results store
       recsys tune SPACE [overrides ...] [options]   hyperparameter search of conf/tune/ on the validation split
       recsys report STORE [options]        Markdown + HTML report with plots from a results store
       recsys plot RUN_DIR [--out FILE]     one run's training curves as a PNG
       recsys bench {%s} [args ...]      run a benchmark and print its table""" % ",".join(BENCHMARKS)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ("-h", "--help") and len(args) == 1:
        print(USAGE)
        return
    if args and args[0] in RUN_COMMANDS:
        from recsys.cli.inference import main as run_command

        raise SystemExit(run_command(args))
    if args and args[0] == "evaluate":
        from recsys.cli.evaluate import main as evaluate

        raise SystemExit(evaluate(args[1:]))
    if args and args[0] == "compare":
        from recsys.cli.compare import main as compare

        raise SystemExit(compare(args[1:]))
    if args and args[0] == "tune":
        from recsys.cli.tune import main as tune

        raise SystemExit(tune(args[1:]))
    if args and args[0] in ("report", "plot"):
        from recsys.cli.report import plot_main, report_main

        raise SystemExit((report_main if args[0] == "report" else plot_main)(args[1:]))
    if args and args[0] == "bench":
        if len(args) == 2 and args[1] in ("-h", "--help"):
            print("usage: recsys bench NAME [args ...]   run a benchmark and print its table "
                  "(`recsys bench NAME --help` for its options)\n\nbenchmarks:")
            for name, module in BENCHMARKS.items():
                print(f"  {name:<18} {module}")
            return
        if len(args) < 2 or args[1] not in BENCHMARKS:
            print(f"error: unknown benchmark {args[1] if len(args) > 1 else '(none)'}; choose one of: {', '.join(BENCHMARKS)}", file=sys.stderr)
            raise SystemExit(2)
        module = importlib.import_module(BENCHMARKS[args[1]])
        raise SystemExit(module.main(args[2:]))
    if args and args[0] == "train":
        args = args[1:]
    from recsys.cli.train import main as train

    train(args)
