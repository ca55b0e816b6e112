"""Final-prompt-token hidden states of every decoder layer: batched, left-padded, no LM head, early stop."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unlock_eval.errors import ConfigError
from unlock_eval.faults import crash_point
from unlock_eval.layers import find_decoder_layers, find_final_norm, layer_hidden, layer_indices


class _StopForward(Exception):
    """Raised by a hook once the deepest needed layer has run, to skip the rest of the network."""


def _base_model(model: nn.Module) -> nn.Module:
    """The decoder stack without the LM head (so capture never computes vocabulary logits)."""
    base = getattr(model, "base_model", None)
    return base if isinstance(base, nn.Module) and base is not model else model


def _input_device(model: nn.Module) -> torch.device:
    """Where input ids go: the embedding's device (offloaded weights sit on `meta`; accelerate's hooks then
    move CPU inputs to the execution device themselves)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    device = emb.weight.device if emb is not None else next(model.parameters()).device
    return torch.device("cpu") if device.type == "meta" else device


@torch.inference_mode()
def capture_final_states(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[str],
    batch_size: int = 8,
    layers: Sequence[int] | None = None,
    layers_path: str | None = None,
    layers_arg: str = "layers_path",
    progress: bool = False,
    desc: str = "capture",
    counter: dict | None = None,
) -> torch.Tensor:
    """Hidden state at the last prompt token, for each requested decoder layer: float32 CPU `[L, n, d]`.

    Entry `l` matches `output_hidden_states[1:][l][:, -1]` of a full forward (the last layer's entry is
    after the final norm). Prompts are sorted by length to minimise padding, run left-padded, and put
    back in order; the forward stops after the deepest requested layer and never runs the LM head.
    """
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise ConfigError("prompts must be a sequence of strings")
    if len(prompts) == 0:
        raise ConfigError("prompts is empty: need at least one prompt to capture states")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    decoder_layers = find_decoder_layers(model, layers_path, arg=layers_arg)
    n_layers = len(decoder_layers)
    wanted = layer_indices(layers, n_layers)
    deepest = wanted[-1]
    norm = find_final_norm(model) if deepest == n_layers - 1 else None
    if tokenizer.padding_side != "left":
        raise ConfigError("tokenizer.padding_side must be 'left' (final-token capture reads position -1)")

    device = _input_device(model)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: torch.Tensor | None = None
    batch_states: dict[int, torch.Tensor] = {}

    def make_hook(idx: int):
        def hook(_module, _args, output):
            h = layer_hidden(output)[:, -1, :]
            if idx == n_layers - 1:
                h = norm(h)
            batch_states[idx] = h.float().cpu()
            if idx == deepest:
                raise _StopForward

        return hook

    handles = [decoder_layers[i].register_forward_hook(make_hook(i)) for i in wanted]
    base = _base_model(model)
    iterator = range(0, len(order), int(batch_size))
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=desc, unit="batch")
    try:
        for start in iterator:
            idx = order[start : start + int(batch_size)]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
            mask = enc["attention_mask"].to(device)
            position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)  # real positions under left padding
            batch_states.clear()
            try:
                base(
                    input_ids=enc["input_ids"].to(device),
                    attention_mask=mask,
                    position_ids=position_ids,
                    use_cache=False,
                )
            except _StopForward:
                pass
            if counter is not None:
                counter["forward_passes"] = counter.get("forward_passes", 0) + 1
            stacked = torch.stack([batch_states[l] for l in wanted])  # [L, b, d]
            if out is None:
                out = torch.empty(len(wanted), len(prompts), stacked.shape[-1], dtype=torch.float32)
            out[:, idx] = stacked
            crash_point("capture")  # a job killed mid-capture: nothing of it may be reused
    finally:
        for h in handles:
            h.remove()
    assert out is not None
    return out
