"""`unlock-eval report` (also `python -m unlock_eval.reports`): lm-eval result folders in, a comparison table out."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from unlock_eval.errors import ConfigError

from .formats import FORMATS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unlock-eval report", description=__doc__)
    p.add_argument("results", nargs="+", help="lm-eval output folders or results_*.json files, any mix")
    p.add_argument("--baseline", help="the row Δ is measured against (a row label, method or results file); "
                   "default: the plain target of each row's model")  # fmt: skip
    p.add_argument("--format", choices=FORMATS, help="default: from --out's suffix, else md")
    p.add_argument("--out", help="write here (atomically) instead of printing")
    p.add_argument("--plots", help="also write every figure as PNG and SVG into this folder")
    return p


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from . import report
    from .formats import render
    from .html import write_page
    from .plots import report_figures

    suffixes = {".md": "md", ".csv": "csv", ".tex": "latex", ".html": "html", ".htm": "html"}
    fmt = args.format or (suffixes.get(Path(args.out).suffix.lower(), "md") if args.out else "md")
    table = report(args.results, args.baseline)
    figures = report_figures(table) if fmt == "html" or args.plots else []
    text = render(table, fmt, figures)
    if args.plots:
        folder = Path(args.plots)
        folder.mkdir(parents=True, exist_ok=True)
        for figure in figures:
            (folder / f"{figure.name}.png").write_bytes(figure.png)
            (folder / f"{figure.name}.svg").write_text(figure.svg)
    if args.out:
        write_page(args.out, text)
        print(f"report: wrote {args.out} ({len(table.rows)} rows, {len(table.columns)} task columns)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return run(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as exc:
        print(f"unlock-eval report: error: {exc}", file=sys.stderr)
        return 2


def behaviour_main(argv: list[str] | None = None) -> int:
    """`unlock-eval behaviour RESULTS...`: behaviour metrics per run and task from lm-eval sample logs."""
    p = argparse.ArgumentParser(prog="unlock-eval behaviour", description=behaviour_main.__doc__)
    p.add_argument("results", nargs="+", help="lm-eval output folders or results_*.json files (run with --log_samples)")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from .behaviour import format_behaviour
    from .runs import load_runs

    try:
        runs, _ = load_runs(args.results)
    except ConfigError as exc:
        print(f"unlock-eval behaviour: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(format_behaviour(runs))
    return 0
