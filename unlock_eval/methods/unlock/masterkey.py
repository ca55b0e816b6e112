"""MasterKey: the per-layer capability direction (unlocked minus locked states), its aggregators and artifact."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from unlock_eval.cache import load_artifact, save_artifact
from unlock_eval.errors import ConfigError

AGGREGATORS = ("mean", "pca")
DEFAULT_AGGREGATOR = "mean"
PCA_SIGNS = {
    "mean": "the top singular vector's sign chosen so that it points along the mean difference (ours)",
    "raw": "whatever sign the SVD returns (the reference)",
}
DEFAULT_PCA_SIGN = "mean"
ARITHMETICS = {
    "float32": "the key and the injection computed in float32/float64 whatever the models' dtype (ours)",
    "model": "in the models' own dtype, as the reference's code does: bf16 differences and injection in bf16",
}
DEFAULT_ARITHMETIC = "float32"


def check_pca_sign(pca_sign: str) -> str:
    if pca_sign not in PCA_SIGNS:
        raise ConfigError(f"pca_sign={pca_sign!r}: allowed values are {', '.join(PCA_SIGNS)}")
    return pca_sign


def check_arithmetic(arithmetic: str) -> str:
    if arithmetic not in ARITHMETICS:
        raise ConfigError(f"arithmetic={arithmetic!r}: allowed values are {', '.join(ARITHMETICS)}")
    return arithmetic


def check_aggregator(aggregator: str) -> str:
    if aggregator not in AGGREGATORS:
        raise ConfigError(f"aggregator={aggregator!r}: allowed values are {', '.join(AGGREGATORS)}")
    return aggregator


def centers(aggregator: str) -> bool:
    """Whether an aggregator centres the states: `pca` does, and then the alignment centres both sides too (as the
    reference does), so k <= n - 1; `mean` does not."""
    return aggregator == "pca"


def _check_states(locked: torch.Tensor, unlocked: torch.Tensor) -> None:
    for name, t in (("locked_states", locked), ("unlocked_states", unlocked)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            raise ConfigError(f"{name} must be a tensor [layers, n, d], got {getattr(t, 'shape', type(t).__name__)}")
    if locked.shape != unlocked.shape:
        raise ConfigError(
            f"locked_states {tuple(locked.shape)} and unlocked_states {tuple(unlocked.shape)} "
            "must have the same shape [layers, n, d] (a model-induced key needs two checkpoints "
            "of one architecture)"
        )


@dataclass
class MasterKey:
    """A capability direction per decoder layer: `vectors` is `[L, d]` float32; `metadata` says how it was made.

    Supports `a + b`, `a - b`, `c * a` and `-a` (metadata of the left operand is kept, marked derived).
    """

    vectors: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.vectors, torch.Tensor) or self.vectors.dim() != 2:
            raise ConfigError(
                f"MasterKey.vectors must be a 2-D tensor [layers, d], got "
                f"{getattr(self.vectors, 'shape', type(self.vectors).__name__)}"
            )
        if not torch.isfinite(self.vectors).all():
            raise ConfigError("MasterKey.vectors contains NaN or inf")
        self.vectors = self.vectors.detach().to(torch.float32).cpu()

    @property
    def num_layers(self) -> int:
        return self.vectors.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.vectors.shape[1]

    @classmethod
    def from_states(
        cls,
        locked_states: torch.Tensor,
        unlocked_states: torch.Tensor,
        aggregator: str = DEFAULT_AGGREGATOR,
        metadata: dict[str, Any] | None = None,
        pca_sign: str = DEFAULT_PCA_SIGN,
        arithmetic: str = DEFAULT_ARITHMETIC,
        states_dtype: torch.dtype | None = None,
    ) -> MasterKey:
        """Aggregate per-example differences `unlocked - locked` (both `[L, n, d]`) into one vector per layer.

        `mean`: the mean difference (not normalised). `pca`: the top right singular vector of the centred
        differences, unit norm; `pca_sign="mean"` turns it to point along the mean difference, `"raw"` keeps the SVD's.
        The metadata lists the layers where the two signs differ (`pca_sign_flipped_layers`).

        `arithmetic="float32"` computes in float64 from the states as given. `"model"` follows the reference's code
        step by step in `states_dtype` (the dtype the states were captured in; default the tensors' own): each
        difference rounded to it, divided by n in it, summed in float32 in prompt order (mean); the SVD in float32
        when the states are float32 (pca, as the reference's float32 extraction).
        """
        check_aggregator(aggregator)
        check_pca_sign(pca_sign)
        check_arithmetic(arithmetic)
        _check_states(locked_states, unlocked_states)
        meta = dict(metadata or {})
        meta.update({"aggregator": aggregator, "n": locked_states.shape[1]})
        if arithmetic == "model":
            dtype = states_dtype or unlocked_states.dtype
            diff = unlocked_states.to(dtype) - locked_states.to(dtype)  # rounded to the models' dtype
            meta["arithmetic"] = f"model ({str(dtype).replace('torch.', '')})"
        else:
            diff = unlocked_states.double() - locked_states.double()
        n = diff.shape[1]
        if aggregator == "mean":
            if arithmetic == "model":  # the reference: a float32 sum of (difference / n), one prompt at a time
                total = torch.zeros(diff.shape[0], diff.shape[2], dtype=torch.float32)
                for i in range(n):
                    total += diff[:, i] / n
                return cls(total, meta)
            return cls(diff.mean(dim=1).float(), meta)
        if n < 2:
            raise ConfigError("aggregator='pca' needs at least 2 prompts (n >= 2)")
        if arithmetic == "model":
            diff = diff.float()
        mean = diff.mean(dim=1)
        _, _, vh = torch.linalg.svd(diff - mean[:, None, :], full_matrices=False)
        top = vh[:, 0, :]  # [L, d]
        flipped = (top * mean).sum(-1) < 0
        meta["pca_sign"] = PCA_SIGNS[pca_sign]
        meta["pca_sign_flipped_layers"] = [int(i) for i in torch.nonzero(flipped).flatten()]
        if pca_sign == "mean":
            top = top * torch.where(flipped, -1.0, 1.0).to(top.dtype)[:, None]
        return cls(top.float(), meta)

    def cosine(self, other: MasterKey) -> torch.Tensor:
        """Per-layer cosine similarity with another key of the same shape: `[L]`."""
        if self.vectors.shape != other.vectors.shape:
            raise ConfigError(
                f"cannot compare keys of shapes {tuple(self.vectors.shape)} and {tuple(other.vectors.shape)}"
            )
        return torch.nn.functional.cosine_similarity(self.vectors.double(), other.vectors.double(), dim=-1).float()

    def _combine(self, other, op, name: str) -> MasterKey:
        if isinstance(other, MasterKey):
            if other.vectors.shape != self.vectors.shape:
                raise ConfigError(
                    f"cannot {name} keys of shapes {tuple(self.vectors.shape)} and {tuple(other.vectors.shape)}"
                )
            other = other.vectors
        elif not isinstance(other, (int, float)):
            return NotImplemented
        return MasterKey(op(self.vectors, other), {**self.metadata, "derived": name})

    def __add__(self, other):
        return self._combine(other, torch.add, "add")

    def __sub__(self, other):
        return self._combine(other, torch.sub, "sub")

    def __mul__(self, scalar):
        if not isinstance(scalar, (int, float)):
            return NotImplemented
        return self._combine(scalar, torch.mul, "scale")

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1.0

    def to_artifact(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The on-disk layout: tensors and metadata for `cache.save_artifact` (used by `save` and the pipeline)."""
        return {"vectors": self.vectors}, {"artifact": "MasterKey", **self.metadata}

    @classmethod
    def from_artifact(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], origin: Any = "artifact"):
        """Inverse of `to_artifact`, from what `cache.load_artifact` returns."""
        meta = dict(metadata)
        if meta.pop("artifact", None) != "MasterKey" or "vectors" not in tensors:
            raise ConfigError(f"{origin} is not a MasterKey artifact (artifact={metadata.get('artifact')!r})")
        return cls(tensors["vectors"], meta)

    def save(self, path: str | os.PathLike) -> str:
        """Write the key (safetensors + JSON metadata) atomically; returns the content checksum."""
        return save_artifact(path, *self.to_artifact())

    @classmethod
    def load(cls, path: str | os.PathLike) -> MasterKey:
        return cls.from_artifact(*load_artifact(path), origin=path)
