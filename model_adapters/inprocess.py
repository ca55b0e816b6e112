"""lm-eval runs inside this process, one after another, as `lm_eval ARGV` would run them: lm-eval's ~10k built-in
task YAMLs indexed once for all of them, and an `unlock` model reused across runs that differ only in alpha."""

from __future__ import annotations

import gc
import json
from contextlib import contextmanager
from pathlib import Path

from unlock_eval.errors import ConfigError


@contextmanager
def shared_builtin_task_index():
    """Index lm-eval's ~10k built-in task YAMLs once for the whole sweep (each run's TaskManager would re-read them:
    several seconds per point); other task folders (ours, the selection twins) are indexed per run as usual."""
    try:
        from lm_eval.tasks import _index
    except ImportError:  # another lm-eval layout: every run indexes on its own, only slower
        yield
        return
    original = _index.TaskIndex.build
    builtin = Path(_index.__file__).resolve().parent
    memo: dict[bool, dict] = {}

    def build(paths, *, resolve_includes=True):
        index: dict = {}
        for root in paths:
            if Path(root).resolve() == builtin:
                if resolve_includes not in memo:
                    memo[resolve_includes] = original([root], resolve_includes=resolve_includes)
                index.update(memo[resolve_includes])
            else:
                index.update(original([root], resolve_includes=resolve_includes))
        return index

    _index.TaskIndex.build = staticmethod(build)
    try:
        yield
    finally:
        _index.TaskIndex.build = staticmethod(original)


class HeldModel:
    """The `unlock` model of the last point (`model`, built from the `--model_args` keyed `key`) and the typed
    alpha and share_alphas of the next point (`next_point`), which reuses it when only those differ."""

    def __init__(self) -> None:
        self.model = None
        self.key: str | None = None
        self.point: tuple[float, list[float] | None] | None = None

    def next_point(self, alpha: float, share_alphas: list[float] | None = None) -> None:
        """The next run is a sweep point at `alpha` (values its grid checked with the spec): a held model whose other
        arguments match is reconfigured with these values, not with its `--model_args` text."""
        self.point = (alpha, share_alphas)


@contextmanager
def reuse_model_across_alphas():
    """Points that differ only in alpha (and share_alphas) reuse the `unlock` model the previous point loaded
    (`UnlockLM.reconfigure`, with the point's typed values: `HeldModel.next_point`) instead of loading the target
    again; any other change loads a new one (one is held). Each run is still an ordinary lm-eval run."""
    from unlock_eval.model_adapters.unlock import UnlockLM

    held = HeldModel()
    original = UnlockLM.create_from_arg_obj  # inherited from lm-eval's LM, bound to UnlockLM

    def create(cls, arg_dict, additional_config=None):
        given = {k: v for k, v in (additional_config or {}).items() if v is not None}
        rest = {k: v for k, v in {**arg_dict, **given}.items() if k not in ("alpha", "share_alphas")}
        key = json.dumps(rest, sort_keys=True, default=str)
        point, held.point = held.point, None
        if key == held.key and point is not None:
            held.model.reconfigure(*point)
            return held.model
        held.model = held.key = None
        gc.collect()
        held.model, held.key = original(arg_dict, additional_config), key
        return held.model

    UnlockLM.create_from_arg_obj = classmethod(create)
    try:
        yield held
    finally:
        del UnlockLM.create_from_arg_obj  # lm-eval's own again
        held.model = held.key = None


def run_lm_eval(argv: list[str]) -> None:
    """One lm-eval run in this process, exactly as `lm_eval ARGV` (its CLI parser and code path)."""
    from lm_eval._cli import HarnessCLI

    from unlock_eval.model_adapters import registration

    registration.install()
    cli = HarnessCLI()
    try:
        args = cli._parser.parse_args(["run", *argv])
    except SystemExit as exc:  # argparse already printed the reason
        raise ConfigError(f"lm-eval rejected the arguments {' '.join(argv)}") from exc
    try:
        cli.execute(args)
    finally:
        gc.collect()  # the model of this point goes before the next one loads
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
