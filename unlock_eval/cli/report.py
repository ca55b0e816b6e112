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
    from unlock_eval.outputs import output_file, output_folder, write_atomic
    from unlock_eval.reports import report
    from unlock_eval.reports.formats import render
    from unlock_eval.reports.html import write_page
    from unlock_eval.reports.plots import report_figures

    out = output_file("--out", args.out) if args.out else None  # every output checked before the reading
    fmt = output_format(args.format, args.out)
    plots = output_folder("--plots", args.plots) if args.plots else None
    table = report(args.results, args.baseline)
    figures = report_figures(table) if fmt == "html" or plots else []
    text = render(table, fmt, figures)
    if plots:
        plots.mkdir(parents=True, exist_ok=True)
        for figure in figures:
            write_atomic(plots / f"{figure.name}.png", figure.png)
            write_page(plots / f"{figure.name}.svg", figure.svg)
    if out:
        write_page(out, text)
        print(f"report: wrote {args.out} ({len(table.rows)} rows, {len(table.columns)} task columns)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


NOT_WRITTEN = (".pdf", ".png", ".svg", ".jpg", ".jpeg", ".json", ".docx", ".xlsx", ".odt", ".ods")  # never md


def output_format(fmt: str | None, out: str | None) -> str:
    """--format, else the one --out's suffix names, else md; a --format that contradicts a known suffix (--format md
    --out r.html) is refused rather than written under the wrong name."""
    from unlock_eval.errors import ConfigError

    named = SUFFIXES.get(Path(out).suffix.lower()) if out else None
    if out and not fmt and Path(out).suffix.lower() in NOT_WRITTEN:
        raise ConfigError(
            f"--out {out}: a report is written as {', '.join(SUFFIXES)}; give one of those (figures: --plots FOLDER)"
        )
    if fmt and named and fmt != named:
        suffix = next(s for s, f in SUFFIXES.items() if f == fmt)
        raise ConfigError(
            f"--format {fmt}: --out {out} is named for {named}; drop --format (the suffix chooses it) or give --out "
            f"a {suffix} name"
        )
    return fmt or named or "md"
