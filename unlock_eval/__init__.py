"""unlock-eval engine: capture states, build MasterKeys, align models and steer; importable without lm-eval.

The public names below load on first use, so `import unlock_eval.checker` (or any light submodule) does not
pay for torch and transformers.
"""

from importlib import import_module

_PUBLIC = {
    "MasterKey": "methods.unlock.masterkey",
    "SubspaceMap": "methods.unlock.align",
    "relative_depth_layer_map": "methods.unlock.align",
    "capture_final_states": "capture",
    "find_decoder_layers": "layers",
    "load_model": "models",
    "resolve_model": "models",
    "steer": "methods.unlock.steer",
    "ConfigError": "errors",
}

__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'unlock_eval' has no attribute {name!r}")
    value = getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
