"""Injection of a MasterKey into a model's residual stream, as a context manager over forward hooks."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from unlock_eval.errors import ConfigError
from unlock_eval.layers import find_decoder_layers, hidden_size, layer_hidden, layer_indices, replace_layer_hidden
from unlock_eval.methods.unlock.masterkey import MasterKey
from unlock_eval.params import as_float

logger = logging.getLogger(__name__)

MODES = {
    "prefill_last": "rotate the last prompt position toward r during prefill only (norm-preserving; reference)",
    "additive_all": "add alpha * ||h|| * r/||r|| at every position, prompt and generated",
}
DEFAULT_MODE = "prefill_last"
DEFAULT_ALPHA = 0.1


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r}: allowed values are {', '.join(MODES)}")
    return mode


def check_alpha(alpha: float) -> float:
    """alpha is a finite number (a relative, angle-like strength; the reference uses 0.05-0.5)."""
    return as_float("alpha", alpha)


def rotate_toward(x: torch.Tensor, r: torch.Tensor, alpha) -> torch.Tensor:
    """prefill_last on float rows `x` [..., d] (r: unit direction): ||x|| * normalize(x/||x|| + alpha * r)."""
    norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    y = x / norm + alpha * r
    return y / y.norm(dim=-1, keepdim=True).clamp_min(1e-12) * norm


def push_along(x: torch.Tensor, r: torch.Tensor, alpha) -> torch.Tensor:
    """additive_all on float rows `x` [..., d] (r: unit direction): x + alpha * ||x|| * r."""
    return x + alpha * x.norm(dim=-1, keepdim=True) * r


def unit_vector(vector: torch.Tensor) -> torch.Tensor | None:
    """vector/||vector|| in float64 (None for a zero vector): the one normalisation steering and composition share."""
    v = vector.double()
    norm = float(v.norm())
    return None if norm == 0.0 else v / norm


def unit_directions(
    key: MasterKey, layers: Sequence[int], arithmetic: str = "float32", normalize: bool = True
) -> dict[int, torch.Tensor]:
    """The direction of each of `layers` where the key is not zero (a zero layer is not steered): r/||r|| (float32,
    normalised in float64); with `arithmetic="model"` the key's own float32 vector, which `steer_rows` casts to the
    stream's dtype and normalises there, as the reference does; with `normalize=False` the key's vector as it is (a
    composition of packs, already a weighted sum of unit directions)."""
    directions = {}
    for l in layers:
        unit = unit_vector(key.vectors[l])
        if unit is not None:
            keep = arithmetic == "model" or not normalize
            directions[l] = key.vectors[l].clone() if keep else unit.float()
    return directions


def profiled(directions: dict[int, torch.Tensor], layer_alphas: dict[int, float] | None) -> dict[int, torch.Tensor]:
    """`directions` without the layers `layer_alphas` (alpha_profile's factors) puts at 0: those are not hooked."""
    if layer_alphas is None:
        return directions
    return {l: d for l, d in directions.items() if layer_alphas.get(l, 1.0) != 0.0}


def steer_rows(x: torch.Tensor, direction: torch.Tensor, alpha, rotate: bool, arithmetic: str = "float32"):
    """`rotate_toward` (prefill_last) or `push_along` (additive_all) on rows `x` of the residual stream, returned in
    x's dtype. `"float32"` arithmetic computes in float32 and rounds once; `"model"` computes every step in x's
    dtype from the key's vector cast to it, in the reference's order (r/||r|| there, alpha * r rounded there)."""
    if arithmetic != "model":
        return (rotate_toward if rotate else push_along)(x.float(), direction, alpha).to(x.dtype)
    r = direction.to(x.dtype)
    r = r / r.norm(dim=-1, keepdim=True)
    step = (r.float() * alpha).to(x.dtype)  # what `r * alpha` rounds to in x's dtype, one alpha or one per row
    norm = x.norm(dim=-1, keepdim=True)
    if not rotate:
        return x + step * norm
    y = x / norm + step
    return y / y.norm(dim=-1, keepdim=True) * norm


def _row_alphas(alpha: torch.Tensor) -> torch.Tensor:
    """One alpha per batch row: a finite 1-D tensor (float32, as the steering arithmetic)."""
    if alpha.dim() != 1 or alpha.numel() == 0 or not bool(torch.isfinite(alpha).all()):
        raise ConfigError(f"alpha as a tensor must be 1-D, non-empty and finite (one per batch row), got {alpha}")
    return alpha.detach().float().cpu()


def _per_row(alpha: float | torch.Tensor, h: torch.Tensor, cache: dict) -> float | torch.Tensor:
    """`alpha` as a scalar, or as a `[batch, 1]` tensor on the hidden state's device (checked against the batch)."""
    if not isinstance(alpha, torch.Tensor):
        return alpha
    if alpha.shape[0] != h.shape[0]:
        raise ConfigError(f"steer: {alpha.shape[0]} alphas for a batch of {h.shape[0]} rows (one alpha per row)")
    if h.device not in cache:
        cache[h.device] = alpha.to(h.device)[:, None]
    return cache[h.device]


@dataclass
class Steering:
    """Live handle of an active `steer(...)` block.

    `positions`: optional LongTensor `[batch]` of the position to steer in each row during prefill
    (default: the last one, -1), for callers such as loglikelihood scoring whose prompt ends before the
    sequence does. `steered_calls` counts steered layer calls (useful to check the hooks fire).
    """

    mode: str
    alpha: float | torch.Tensor
    layers: list[int]
    positions: torch.Tensor | None = None
    steered_calls: int = 0
    skipped_layers: list[int] = field(default_factory=list)


def _is_prefill(hidden: torch.Tensor, kwargs: dict) -> bool:
    if hidden.shape[1] > 1:
        return True
    pos = kwargs.get("position_ids")  # one-token prompts: prefill is the call at position 0
    return pos is not None and bool((pos == 0).all())


@contextmanager
def steer(
    model: nn.Module,
    key: MasterKey,
    alpha: float | torch.Tensor = DEFAULT_ALPHA,
    mode: str = DEFAULT_MODE,
    layers: Sequence[int] | None = None,
    layers_path: str | None = None,
    arithmetic: str = "float32",
    normalize: bool = True,
    layer_alphas: dict[int, float] | None = None,
) -> Iterator[Steering]:
    """Steer `model` with `key` inside the block; hooks are removed on exit, also on exceptions.

    prefill_last: at every steered layer's output, prefill pass only, last prompt position only:
        h <- ||h|| * normalize(h/||h|| + alpha * r/||r||)
    additive_all: at every position of every forward pass: h <- h + alpha * ||h|| * r/||r||

    `alpha` is one number, or a 1-D tensor with one alpha per batch row (the same formulas row by row: one batch
    then carries several alpha points of a sweep). `arithmetic`: see `steer_rows`; `normalize=False` steers with the
    key's vectors as they are (see `unit_directions`). `layer_alphas` (layer -> factor) scales alpha per layer: layer l
    is steered at alpha * layer_alphas[l]; a layer at factor 0 is not steered.
    """
    check_mode(mode)
    alpha = _row_alphas(alpha) if isinstance(alpha, torch.Tensor) else check_alpha(alpha)
    if not isinstance(key, MasterKey):
        raise ConfigError(f"key must be a MasterKey, got {type(key).__name__}")
    decoder_layers = find_decoder_layers(model, layers_path)
    d = hidden_size(model)
    if key.num_layers != len(decoder_layers) or (d is not None and key.hidden_size != d):
        raise ConfigError(
            f"key of shape [{key.num_layers}, {key.hidden_size}] does not match the model "
            f"({type(model).__name__}: {len(decoder_layers)} layers, hidden size {d})"
        )
    chosen = layer_indices(layers, len(decoder_layers))

    handle = Steering(mode=mode, alpha=alpha, layers=chosen)
    hooks = []

    def make_hook(direction: torch.Tensor, factor: float | None):
        per_device: dict[torch.device, torch.Tensor] = {}
        alpha_per_device: dict[torch.device, torch.Tensor] = {}

        def hook(_module, _args, kwargs, output):
            h = layer_hidden(output)
            r = per_device.get(h.device)
            if r is None:
                r = per_device[h.device] = direction.to(h.device)
            a = _per_row(alpha, h, alpha_per_device)  # a scalar, or [batch, 1]
            if factor is not None:
                a = a * factor
            if mode == "prefill_last":
                if not _is_prefill(h, kwargs):
                    return None
                rows = torch.arange(h.shape[0], device=h.device)
                pos = handle.positions
                cols = torch.full_like(rows, h.shape[1] - 1) if pos is None else pos.to(h.device)
                h = h.clone()
                h[rows, cols] = steer_rows(h[rows, cols], r, a, True, arithmetic)
            else:
                scale = a if not isinstance(a, torch.Tensor) else a[:, :, None]  # [batch, 1, 1] over positions
                h = steer_rows(h, r, scale, False, arithmetic)
            handle.steered_calls += 1
            return replace_layer_hidden(output, h)

        return hook

    try:
        directions = unit_directions(key, chosen, arithmetic, normalize)
        handle.skipped_layers = [l for l in chosen if l not in directions]
        for l, unit in profiled(directions, layer_alphas).items():
            layer = decoder_layers[l]
            param = next(layer.parameters(), None)
            # offloaded layers (device_map with cpu/disk offload) have meta parameters: start on CPU, the hook
            # moves the vector to whatever device the hidden state is on
            device = param.device if param is not None and param.device.type != "meta" else torch.device("cpu")
            direction = unit.to(device)
            # prepend: run before other hooks (transformers' output_hidden_states recorder) so they see steered states
            factor = None if layer_alphas is None else layer_alphas.get(l, 1.0)
            hooks.append(layer.register_forward_hook(make_hook(direction, factor), with_kwargs=True, prepend=True))
        if handle.skipped_layers:
            logger.warning("steer: key is zero at layers %s; those layers are not steered", handle.skipped_layers)
        yield handle
    finally:
        for h in hooks:
            h.remove()
