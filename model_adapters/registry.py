"""The lm-eval models unlock-eval adds: one table of name, class and results-folder name, read by the start-up hook."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _short(spec: str) -> str:
    """A model spec as it reads in a folder name: the last path component of a local path, else the spec."""
    return Path(spec).name if spec.startswith((".", "/", "~")) else spec


def unlock_run_name(model_args: dict[str, Any]) -> str:
    target = str(model_args.get("target", "unknown"))
    if model_args.get("key"):  # capability packs, named by their files
        packs = "+".join(Path(p.strip()).stem for p in str(model_args["key"]).split(";") if p.strip())
        return f"unlock_pack_{packs}_to_{_short(target)}"
    source = str(model_args.get("source", target))
    return f"unlock_native_{_short(target)}" if source == target else f"unlock_{_short(source)}_to_{_short(target)}"


def _transfer_run_name(method: str) -> Callable[[dict[str, Any]], str]:
    def name(model_args: dict[str, Any]) -> str:
        target = str(model_args.get("target", "unknown"))
        return f"{method}_{_short(str(model_args.get('source', target)))}_to_{_short(target)}"

    return name


@dataclass(frozen=True)
class ModelEntry:
    """`target` is "module:Class", imported only when lm-eval builds the model; `run_name` names its results folder
    (lm-eval would invent a random one: our models take target=/source=, not pretrained=); `spec` is the
    "module:Class" of its declared model_args (unlock_eval.methods.*.spec), which `unlock-eval args MODEL` prints."""

    target: str
    run_name: Callable[[dict[str, Any]], str]
    spec: str

    def spec_class(self) -> type:
        import importlib

        module, name = self.spec.split(":")
        return getattr(importlib.import_module(module), name)


MODELS: dict[str, ModelEntry] = {
    "unlock": ModelEntry(
        "unlock_eval.model_adapters.unlock:UnlockLM", unlock_run_name, "unlock_eval.methods.unlock.spec:UnlockSpec"
    ),
    "weight_transfer": ModelEntry(
        "unlock_eval.model_adapters.weight_transfer:WeightTransferLM",
        _transfer_run_name("weight_transfer"),
        "unlock_eval.methods.weight_transfer.spec:WeightTransferSpec",
    ),
    "logit_transfer": ModelEntry(
        "unlock_eval.model_adapters.logit_transfer:LogitTransferLM",
        _transfer_run_name("logit_transfer"),
        "unlock_eval.methods.logit_transfer.spec:LogitTransferSpec",
    ),
}


def run_name(model: str, model_args: str | dict[str, Any]) -> str:
    """The results-folder name of a run of one of our models, from its `--model_args` (string or dict)."""
    if isinstance(model_args, str):
        model_args = dict(kv.split("=", 1) for kv in model_args.split(",") if "=" in kv)
    return MODELS[model].run_name(model_args)
