"""`unlock-eval report RESULTS...`: lm-eval result folders in, the comparison table out (md, csv, latex, html)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SUFFIXES = {".md": "md", ".csv": "csv", ".tex": "latex", ".html": "html", ".htm": "html"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from unlock_eval.reports.formats import FORMATS

    p.add_argument("results", nargs="+", help="lm-eval output folders or results_*.json files, any mix")
    p.add_argument("--baseline", help="the row Δ is measured against (a row label, method or results file); "
                   "default: the plain target of each row's model")  # fmt: skip
    p.add_argument("--format", choices=FORMATS, help="default: from --out's suffix, else md")
    p.add_argument("--out", help="write here (atomically) instead of printing")
    p.add_argument("--plots", help="also write every figure as PNG and SVG into this folder")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from unlock_eval.reports import report
    from unlock_eval.reports.formats import render
    from unlock_eval.reports.html import write_page
    from unlock_eval.reports.plots import report_figures

    fmt = args.format or (SUFFIXES.get(Path(args.out).suffix.lower(), "md") if args.out else "md")
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
