"""`unlock-eval run ...`: lm-eval's own CLI, after registering our models and tasks (the flags of `lm_eval`).

lm-eval's parser prints its own usage errors; the checks lm-eval makes of the flags it parsed (the tasks named, the
--config file, flags that exclude each other) raise plain exceptions with a traceback there, and are one line here,
`unlock-eval run: error: ...`, as every other bad input (our models' included)."""

from __future__ import annotations

import sys
from contextlib import contextmanager


def main(argv: list[str]) -> int:
    from unlock_eval.cli import run_command
    from unlock_eval.model_adapters import registration  # the lazy registration the .pth start-up hook installs

    registration.install()
    return run_command("run", lambda: _evaluate(argv))


def _evaluate(argv: list[str]) -> int:
    from lm_eval.__main__ import cli_evaluate

    check_flags(argv)
    sys.argv = ["lm_eval", *argv]
    with lm_eval_checks_as_config_errors():
        result = cli_evaluate()
    return result if isinstance(result, int) else 0


def _values(argv: list[str], flag: str) -> list[str]:
    """The values given to `flag` (`--flag v` or `--flag=v`), in order."""
    found = []
    for i, item in enumerate(argv):
        if item == flag and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif item.startswith(f"{flag}="):
            found.append(item.split("=", 1)[1])
    return found


def check_flags(argv: list[str]) -> None:
    """What lm-eval itself finds out late or not at all, one line before anything loads: a model name it does not
    know (a traceback after the tasks are built), an --output_path it cannot write to (the results were lost with
    exit 0), an --include_path that does not exist (reported as unknown tasks)."""
    from pathlib import Path

    import lm_eval.models  # noqa: F401 - fills the registry (ours too, through the start-up hook)
    from lm_eval.api.registry import model_registry

    from unlock_eval.errors import ConfigError
    from unlock_eval.outputs import output_file, output_folder

    for model in _values(argv, "--model"):
        if model not in model_registry:
            known = ", ".join(sorted(model_registry)[:12])
            raise ConfigError(f"--model {model}: no such model; ours are unlock, weight_transfer, logit_transfer "
                              f"(all: {known}, ...)")  # fmt: skip
    for path in _values(argv, "--output_path"):  # lm-eval takes a folder, or a .json file name
        (output_file if path.endswith(".json") else output_folder)("--output_path", path)
    for path in _values(argv, "--include_path"):
        if not Path(path).expanduser().exists():
            raise ConfigError(f"--include_path {path}: no such folder or file")


@contextmanager
def lm_eval_checks_as_config_errors():
    """While lm-eval runs: what its EvaluatorConfig refuses (building it from the flags, resolving the tasks) is a
    ConfigError, and no task at all is refused there rather than deep in simple_evaluate. Restored afterwards."""
    from lm_eval.config.evaluate_config import EvaluatorConfig

    saved = {name: EvaluatorConfig.__dict__[name] for name in ("from_cli", "process_tasks")}
    from_cli, process_tasks = EvaluatorConfig.from_cli, saved["process_tasks"]

    def checked_from_cli(cls, namespace):
        with _refused():
            return from_cli(namespace)

    def checked_process_tasks(self, *args, **kwargs):
        with _refused():
            manager = process_tasks(self, *args, **kwargs)
        if not self.tasks:
            from unlock_eval.errors import ConfigError

            raise ConfigError("--tasks: no task given (`lm_eval ls tasks` lists them)")
        return manager

    EvaluatorConfig.from_cli = classmethod(checked_from_cli)
    EvaluatorConfig.process_tasks = checked_process_tasks
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(EvaluatorConfig, name, original)


@contextmanager
def _refused():
    from unlock_eval.errors import ConfigError

    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, OSError) as exc:
        message, unknown = str(exc), "Tasks not found: "
        if message.startswith(unknown):
            message = f"--tasks: unknown task(s) {message[len(unknown) :]} (`lm_eval ls tasks` lists them)"
        raise ConfigError(message) from None
