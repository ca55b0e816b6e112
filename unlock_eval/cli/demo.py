"""`unlock-eval demo` (`make demo`): the comparison on the embedded pair (unlock_eval.experiments.demo)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from unlock_eval.experiments.demo import add_arguments as demo_arguments

    demo_arguments(p)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from unlock_eval.experiments.demo import Demo
    from unlock_eval.outputs import output_folder

    output_folder("--output", args.output)  # a file there, or an unwritable folder: one line, before the runs
    return Demo(args).main()
