"""`unlock-eval args [MODEL]`: the model_args of one of our lm-eval models as a markdown table (the docs' table)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from unlock_eval.model_adapters.registry import MODELS

    p.add_argument("model", nargs="?", default="unlock", choices=list(MODELS))


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from unlock_eval.model_adapters.registry import MODELS
    from unlock_eval.params import markdown_table

    print(markdown_table(MODELS[args.model].spec_class()))
    return 0
