"""`unlock-eval run ...`: lm-eval's own CLI, after registering our models and tasks (the flags of `lm_eval`)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from unlock_eval.model_adapters import registration  # the lazy registration the .pth start-up hook installs

    registration.install()
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    result = cli_evaluate()
    return result if isinstance(result, int) else 0
