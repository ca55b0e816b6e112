"""Where a causal LM keeps its decoder layers and final norm, and how to read a layer's output tensor."""

from __future__ import annotations

from typing import Any

from torch import nn

from unlock_eval.errors import ConfigError

# Where the decoder layer list lives, by attribute path; first match wins.
KNOWN_LAYER_PATHS = (
    "model.layers",  # Llama, Qwen2/3, Gemma2/3, Mistral, OLMo2, Phi3, ...
    "model.language_model.layers",  # multimodal wrappers (Gemma3ForConditionalGeneration, ...)
    "transformer.h",  # GPT-2, GPT-J, Falcon
    "gpt_neox.layers",  # GPT-NeoX, Pythia
    "model.decoder.layers",  # OPT
    "transformer.blocks",  # MPT
    "layers",  # a bare decoder
)

# The norm after the last decoder layer (HF's last hidden_states entry includes it), by attribute path.
KNOWN_FINAL_NORM_PATHS = (
    "model.norm",
    "model.language_model.norm",
    "transformer.ln_f",
    "gpt_neox.final_layer_norm",
    "model.decoder.final_layer_norm",
    "transformer.norm_f",
    "norm",
)


def _get_path(obj: Any, path: str) -> Any:
    for attr in path.split("."):
        obj = getattr(obj, attr, None)
        if obj is None:
            return None
    return obj


def find_decoder_layers(model: nn.Module, layers_path: str | None = None, arg: str = "layers_path") -> nn.ModuleList:
    """The list of decoder layers of a causal LM; `layers_path` ("model.layers") overrides the lookup.

    `arg` is the name under which the caller accepts the override, so the error tells the user what to pass.
    """
    if layers_path:
        found = _get_path(model, layers_path)
        if isinstance(found, nn.ModuleList) and len(found) > 0:
            return found
        raise ConfigError(f"{arg}={layers_path!r} does not name a non-empty nn.ModuleList on {type(model).__name__}")
    for path in KNOWN_LAYER_PATHS:
        found = _get_path(model, path)
        if isinstance(found, nn.ModuleList) and len(found) > 0:
            return found
    raise ConfigError(
        f"cannot find the decoder layers of {type(model).__name__} (tried {', '.join(KNOWN_LAYER_PATHS)}): "
        f"pass {arg}=dotted.path.to.the.ModuleList"
    )


def layer_indices(layers: Any, n_layers: int, owner: str = "the model") -> list[int]:
    """`layers` (None: all) as sorted distinct indices into `owner`'s `n_layers` decoder layers (the one rule for
    steering, capture and a run's layers= argument)."""
    chosen = list(range(n_layers)) if layers is None else sorted({int(layer) for layer in layers})
    if not chosen or any(not 0 <= layer < n_layers for layer in chosen):
        raise ConfigError(
            f"layers={list(layers or [])}: {owner} has {n_layers} layers; layers must be indices in [0, {n_layers - 1}]"
        )
    return chosen


def find_final_norm(model: nn.Module) -> nn.Module:
    """The norm applied after the last decoder layer."""
    for path in KNOWN_FINAL_NORM_PATHS:
        found = _get_path(model, path)
        if isinstance(found, nn.Module):
            return found
    raise ConfigError(
        f"cannot find the final norm of {type(model).__name__} (tried {', '.join(KNOWN_FINAL_NORM_PATHS)}): "
        "capture layers up to L-2 only"
    )


def layer_hidden(output: Any):
    """The hidden-state tensor of a decoder layer's output (a tensor in transformers 5, a tuple before)."""
    return output[0] if isinstance(output, tuple) else output


def replace_layer_hidden(output: Any, hidden):
    """The layer output with its hidden-state tensor replaced, in the same shape (tensor or tuple)."""
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def hidden_size(model: nn.Module) -> int | None:
    """The residual width from the model's (text) config, or None when the config does not say."""
    cfg = getattr(model, "config", None)
    text_cfg = getattr(cfg, "text_config", None) or cfg
    for attr in ("hidden_size", "n_embd", "d_model"):
        if text_cfg is not None and isinstance(getattr(text_cfg, attr, None), int):
            return getattr(text_cfg, attr)
    return None
