"""`unlock-eval` command line: `run` (the lm-eval CLI with our models and tasks), `diagnose`, `args`, `cache`
housekeeping, and `demo`, `report`, `sweep`, `behaviour` (in unlock_eval.reports)."""

from __future__ import annotations

import argparse
import logging
import sys


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Per-layer diagnostics of a transfer from cached (or newly captured) states: table, --json, --plot."""
    from .diagnose import format_diagnosis, plot_diagnosis, run_diagnosis, to_json_text
    from .errors import ConfigError
    from .params import as_index_list
    from .spec import UnlockSpec

    fields = ("target", "source", "source_locked", "capability", "k", "n", "aggregator", "extract_from", "cache_dir")
    given = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    spec = UnlockSpec(**given, extract_batch_size=args.batch_size)
    sweep_k = as_index_list("--sweep-k", args.sweep_k) if args.sweep_k else []
    sweep_n = as_index_list("--sweep-n", args.sweep_n) if args.sweep_n else []
    if args.folds < 2:
        raise ConfigError(f"--folds={args.folds}: expected an integer >= 2")
    diagnosis = run_diagnosis(spec, args.folds, sweep_k, sweep_n, progress=not args.json)
    print(to_json_text(diagnosis) if args.json else format_diagnosis(diagnosis))
    if args.plot:
        plot_diagnosis(diagnosis, args.plot)
        if not args.json:
            print(f"plot: {args.plot}")
    return 0


def cmd_args(args: argparse.Namespace) -> int:
    """Print the model_args of one of our lm-eval models as a markdown table (the README's table)."""
    from .model_adapters.registry import MODELS
    from .params import markdown_table

    print(markdown_table(MODELS[args.model].spec_class()))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """`cache list` / `cache prune`: the engine is unlock_eval.cache_admin; this only passes the flags on."""
    from pathlib import Path

    from . import cache_admin
    from .cache import default_cache_dir

    root = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    if args.cache_command == "list":
        print(cache_admin.format_list(cache_admin.list_entries(root, args.kind), root))
    else:
        removed, skipped = cache_admin.prune(root, args.kind, args.older_than, args.all, args.dry_run)
        print(cache_admin.format_prune(removed, skipped, args.dry_run))
    return 0


def cmd_run(argv: list[str]) -> int:
    """Run lm-eval's own CLI after registering our models and tasks (same flags as `lm_eval`)."""
    import _unlock_eval_startup  # the same lazy registration the .pth start-up hook installs

    _unlock_eval_startup.install()
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    result = cli_evaluate()
    return result if isinstance(result, int) else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        return cmd_run(argv[1:])
    if argv[:1] == ["report"]:  # its own parser and error line (unlock_eval.reports.cli)
        from .reports.cli import main as report_main

        return report_main(argv[1:])
    if argv[:1] == ["behaviour"]:
        from .reports.cli import behaviour_main

        return behaviour_main(argv[1:])
    if argv[:1] == ["demo"]:  # the comparison on the embedded pair (unlock_eval.reports.demo)
        from .reports.demo import main as demo_main

        return demo_main(argv[1:])
    if argv[:1] == ["sweep"]:  # its own parser; unknown flags go to every lm-eval run
        from .reports.sweep import main as sweep_main

        return sweep_main(argv[1:])
    from .masterkey import AGGREGATORS

    parser = argparse.ArgumentParser(prog="unlock-eval", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="lm_eval with unlock-eval's models and tasks registered (takes lm_eval's flags)")
    sub.add_parser("report", help="comparison table (paired statistics), plots, HTML from lm-eval result folders")
    sub.add_parser(
        "sweep", help="a grid over alpha, k, n through lm-eval (resumable, --select-on dev), then the report"
    )
    args_cmd = sub.add_parser("args", help="list the model_args of one of our lm-eval models, with their defaults")
    from .model_adapters.registry import MODELS

    args_cmd.add_argument("model", nargs="?", default="unlock", choices=list(MODELS))
    sub.add_parser(
        "demo", help="the comparison on the embedded pair: five methods through lm-eval, the table and HTML report"
    )
    diag = sub.add_parser(
        "diagnose", help="will a transfer work? held-out R², CKA, cosine with the native key, per layer"
    )
    diag.add_argument("--source", required=True, help="model with the capability (hub id, local dir, .gguf, embedded)")
    diag.add_argument("--target", required=True, help="the model the key is transferred into")
    diag.add_argument("--source-locked", dest="source_locked", help="the source without it (two checkpoints)")
    diag.add_argument("--capability", help="template preset (default cot)")
    diag.add_argument("--k", type=int, help="subspace rank (default 16)")
    diag.add_argument("--n", type=int, help="extraction prompts (default 64)")
    diag.add_argument("--aggregator", choices=AGGREGATORS)
    diag.add_argument("--extract-from", dest="extract_from", help="gsm8k, math or a .jsonl (default gsm8k)")
    diag.add_argument("--folds", type=int, default=5, help="folds of the held-out R² (default 5)")
    diag.add_argument("--sweep-k", help="also these k, e.g. 1,4,16,64 (one decomposition for all)")
    diag.add_argument("--sweep-n", help="also these n, e.g. 8,16,32 (the largest n captured once, then subsampled)")
    diag.add_argument("--json", action="store_true", help="print JSON instead of the table")
    diag.add_argument("--plot", help="write the numbers against relative depth to this PNG or SVG file")
    diag.add_argument(
        "--cache-dir", dest="cache_dir", help="artifact cache (default: UNLOCK_EVAL_CACHE_DIR or user cache)"
    )
    diag.add_argument("--batch-size", type=int, default=8, help="batch size of any capture (default 8)")
    cache = sub.add_parser("cache", help="list or prune the artifact cache (models, states, keys, maps)")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    cache_list = cache_sub.add_parser("list", help="every cache entry: kind, size, last use, what it is")
    prune = cache_sub.add_parser("prune", help="remove entries by kind and/or age (entries in use are skipped)")
    for p in (cache_list, prune):
        p.add_argument("--cache-dir", default=None, help="default: UNLOCK_EVAL_CACHE_DIR or the user cache")
        p.add_argument("--kind", action="append", help="only this kind (repeatable), e.g. merged, converted, states")
    prune.add_argument("--older-than", type=float, metavar="DAYS", help="only entries unused for DAYS days")
    prune.add_argument("--all", action="store_true", help="every entry (with --kind/--older-than: all that match)")
    prune.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from .errors import ConfigError

    try:
        return {"args": cmd_args, "cache": cmd_cache, "diagnose": cmd_diagnose}[args.command](args)
    except ConfigError as exc:  # a bad input (argument, data, model): one line; anything else is a bug and shows
        print(f"unlock-eval: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
