"""`unlock-eval behaviour RESULTS...`: behaviour metrics per run and task from lm-eval sample logs."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", help="lm-eval output folders or results_*.json files (run with --log_samples)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from unlock_eval.reports.behaviour import format_behaviour
    from unlock_eval.reports.runs import load_runs

    runs, _ = load_runs(args.results)
    sys.stdout.write(format_behaviour(runs))
    return 0
