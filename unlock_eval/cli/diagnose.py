"""`unlock-eval diagnose`: per-layer diagnostics of a transfer from cached (or newly captured) states: a table,
--json, --plot (the numbers: unlock_eval.methods.unlock.diagnostics; table and figure: unlock_eval.reports)."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    from unlock_eval.methods.unlock.masterkey import AGGREGATORS

    p.add_argument("--source", required=True, help="model with the capability (hub id, local dir, .gguf, embedded)")
    p.add_argument("--target", required=True, help="the model the key is transferred into")
    p.add_argument("--source-locked", dest="source_locked", help="the source without it (two checkpoints)")
    p.add_argument("--capability", help="template preset (default cot)")
    p.add_argument("--k", type=int, help="subspace rank (default 16)")
    p.add_argument("--n", type=int, help="extraction prompts (default 64)")
    p.add_argument("--aggregator", choices=AGGREGATORS)
    p.add_argument("--extract-from", dest="extract_from", help="gsm8k, math or a .jsonl (default gsm8k)")
    p.add_argument("--folds", type=int, default=5, help="folds of the held-out R² (default 5)")
    p.add_argument("--sweep-k", help="also these k, e.g. 1,4,16,64 (one decomposition for all)")
    p.add_argument("--sweep-n", help="also these n, e.g. 8,16,32 (the largest n captured once, then subsampled)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--plot", help="write the numbers against relative depth to this PNG or SVG file")
    p.add_argument(
        "--cache-dir", dest="cache_dir", help="artifact cache (default: UNLOCK_EVAL_CACHE_DIR or user cache)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="batch size of any capture (default 8)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from unlock_eval.errors import ConfigError
    from unlock_eval.methods.unlock.diagnostics import run_diagnosis
    from unlock_eval.methods.unlock.spec import UnlockSpec
    from unlock_eval.params import as_index_list
    from unlock_eval.reports.diagnostics_table import format_diagnosis

    fields = ("target", "source", "source_locked", "capability", "k", "n", "aggregator", "extract_from", "cache_dir")
    given = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    spec = UnlockSpec(**given, extract_batch_size=args.batch_size)
    sweep_k = as_index_list("--sweep-k", args.sweep_k) if args.sweep_k else []
    sweep_n = as_index_list("--sweep-n", args.sweep_n) if args.sweep_n else []
    if args.folds < 2:
        raise ConfigError(f"--folds={args.folds}: expected an integer >= 2")
    diagnosis = run_diagnosis(spec, args.folds, sweep_k, sweep_n, progress=not args.json)
    print(json.dumps(diagnosis.to_json(), indent=2) if args.json else format_diagnosis(diagnosis))
    if args.plot:
        _save_plot(diagnosis, args.plot)
        if not args.json:
            print(f"plot: {args.plot}")
    return 0


def _save_plot(diagnosis, path: str) -> None:
    """Write the diagnosis figure to a PNG or SVG file (without a date or software stamp: the same numbers give the
    same file)."""
    import matplotlib.pyplot as plt

    from unlock_eval.reports.plots import diagnosis_figure

    fig = diagnosis_figure(diagnosis)
    fig.savefig(path, metadata={"Software": None} if str(path).endswith(".png") else {"Date": None})
    plt.close(fig)
