"""`unlock-eval diagnose`: per-layer diagnostics of a transfer from cached (or newly captured) states: a table,
--json, --plot (the numbers: unlock_eval.methods.unlock.diagnostics; table and figure: unlock_eval.reports)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PLOT_SUFFIXES = (".png", ".svg")


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
    p.add_argument("--folds", type=int, help="folds of the held-out R², 2 to n (default 5, at most n)")
    p.add_argument("--sweep-k", help="also these k, e.g. 1,4,16,64 (one decomposition for all)")
    p.add_argument("--sweep-n", help="also these n, e.g. 8,16,32 (the largest n captured once, then subsampled)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--plot", help="write the numbers against relative depth to this PNG or SVG file")
    p.add_argument(
        "--cache-dir", dest="cache_dir", help="artifact cache (default: UNLOCK_EVAL_CACHE_DIR or user cache)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="batch size of any capture (default 8)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from unlock_eval.methods.unlock.diagnostics import run_diagnosis
    from unlock_eval.methods.unlock.spec import UnlockSpec
    from unlock_eval.outputs import output_file
    from unlock_eval.reports.diagnostics_table import format_diagnosis

    plot = output_file("--plot", args.plot, PLOT_SUFFIXES) if args.plot else None  # before the minutes of work
    fields = ("target", "source", "source_locked", "capability", "k", "n", "aggregator", "extract_from", "cache_dir")
    given = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    spec = UnlockSpec(**given, extract_batch_size=args.batch_size)
    sweep_k, sweep_n = _sizes("--sweep-k", args.sweep_k), _sizes("--sweep-n", args.sweep_n)
    folds = _folds(args.folds, spec.n, sweep_n)
    diagnosis = run_diagnosis(spec, folds, sweep_k, sweep_n, progress=not args.json)
    print(json.dumps(diagnosis.to_json(), indent=2) if args.json else format_diagnosis(diagnosis))
    if plot:
        _save_plot(diagnosis, plot)
        if not args.json:
            print(f"plot: {args.plot}")
    return 0


def _sizes(flag: str, text: str | None) -> list[int]:
    """--sweep-k / --sweep-n: comma-separated integers >= 1 (each must also fit n: run_diagnosis checks that)."""
    from unlock_eval.experiments.grid import parse_axis
    from unlock_eval.params import as_int

    return parse_axis(flag, text, lambda name, value: as_int(name, value, 1)) or []


def _folds(folds: int | None, n: int, sweep_n: list[int]) -> int:
    """The held-out R²'s folds: 2 to the fewest prompts diagnosed (each fold holds out one prompt at least); the
    default 5, fewer where n is smaller."""
    from unlock_eval.errors import ConfigError
    from unlock_eval.methods.unlock.diagnostics import DEFAULT_FOLDS

    fewest = min([n, *sweep_n])
    if folds is None:
        return min(DEFAULT_FOLDS, fewest)
    if not 2 <= folds <= fewest:
        by = f"--sweep-n {fewest}" if fewest < n else f"n={n}"
        raise ConfigError(f"--folds={folds}: expected an integer from 2 to {fewest} (the prompts diagnosed: {by})")
    return folds


def _save_plot(diagnosis, path: Path) -> None:
    """Write the diagnosis figure to a PNG or SVG file, atomically (without a date or software stamp: the same numbers
    give the same file)."""
    import io

    import matplotlib.pyplot as plt

    from unlock_eval.outputs import write_atomic
    from unlock_eval.reports.plots import diagnosis_figure

    fig = diagnosis_figure(diagnosis)
    kind = path.suffix.lower()[1:]
    buffer = io.BytesIO()
    fig.savefig(buffer, format=kind, metadata={"Software": None} if kind == "png" else {"Date": None})
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
