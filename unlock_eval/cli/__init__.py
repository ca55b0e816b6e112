"""`unlock-eval`: one module per subcommand (unlock_eval/cli/<name>.py), dispatched here, errors as one line.

A subcommand module has `add_arguments(parser)` and `run(args, extra) -> int` (`extra`: the flags it passes on,
for `sweep`); `run` passes everything to lm-eval's own CLI and has `main(argv)` instead. Only the chosen module is
imported, so `unlock-eval cache list` does not pay for torch or lm-eval.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import import_module

# name -> one line of help; the module unlock_eval.cli.<name> (behaviour: unlock_eval.cli.behaviour) does the work
COMMANDS = {
    "run": "lm_eval with unlock-eval's models and tasks registered (takes lm_eval's flags)",
    "report": "comparison table (paired statistics), plots, HTML from lm-eval result folders",
    "behaviour": "behaviour metrics (step structure, degeneration, repetition, first words) from lm-eval sample logs",
    "sweep": "a grid over alpha, k, n through lm-eval (resumable, --select-on dev), then the report",
    "demo": "the comparison on the embedded pair: five methods through lm-eval, the table and HTML report",
    "diagnose": "will a transfer work? held-out R², CKA, cosine with the native key, per layer",
    "pack": "write a capability pack (a transferred key with its provenance) or a llama.cpp control vector; "
    "pack inspect / pack compare",
    "args": "list the model_args of one of our lm-eval models, with their defaults",
    "cache": "list or prune the artifact cache (models, states, keys, maps)",
}
PASSTHROUGH = {"sweep"}  # unknown flags go on to every lm-eval run instead of being refused


DESCRIPTION = (
    "unlock-eval: training-free capability transfer on lm-eval. Evaluate with `unlock-eval run` (or plain lm_eval "
    "--model unlock); compare with report and behaviour; search with sweep; check a pair with diagnose."
)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv else None
    if name == "run":  # lm-eval's own parser and messages, untouched
        return import_module("unlock_eval.cli.run").main(argv[1:])
    parser = argparse.ArgumentParser(prog="unlock-eval", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, help_text in COMMANDS.items():
        sub_parser = sub.add_parser(command, help=help_text, allow_abbrev=False)
        if command == name:
            module = import_module(f"unlock_eval.cli.{command}")
            sub_parser.description = module.__doc__
            module.add_arguments(sub_parser)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in PASSTHROUGH:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run_command(args.command, lambda: module.run(args, extra))


def run_command(name: str, work) -> int:
    """A bad input (unlock_eval.errors.ConfigError: argument, data, model) is one line and exit status 2; anything
    else is a bug and shows its traceback."""
    from unlock_eval.errors import ConfigError

    try:
        return work()
    except ConfigError as exc:
        print(f"unlock-eval {name}: error: {exc}", file=sys.stderr)
        return 2
