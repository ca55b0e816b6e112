"""`unlock-eval sweep`: a grid of `--model unlock` runs through lm-eval (unlock_eval.experiments.sweep)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from unlock_eval.experiments.sweep import EPILOG
    from unlock_eval.experiments.sweep import add_arguments as sweep_arguments

    p.epilog = EPILOG
    sweep_arguments(p)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from unlock_eval.experiments.sweep import Sweep

    return Sweep(args, extra).run()
