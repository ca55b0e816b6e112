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
    ) -> MasterKey:
        """Aggregate per-example differences `unlocked - locked` (both `[L, n, d]`) into one vector per layer.

        `mean`: the mean difference (not normalised). `pca`: the top right singular vector of the centred
        differences, unit norm, its sign chosen so that it points along the mean difference.
        """
        check_aggregator(aggregator)
        _check_states(locked_states, unlocked_states)
        diff = unlocked_states.double() - locked_states.double()  # [L, n, d]
        mean = diff.mean(dim=1)
        meta = dict(metadata or {})
        meta.update({"aggregator": aggregator, "n": diff.shape[1]})
        if aggregator == "mean":
            return cls(mean.float(), meta)
        if diff.shape[1] < 2:
            raise ConfigError("aggregator='pca' needs at least 2 prompts (n >= 2)")
        centred = diff - mean[:, None, :]
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        top = vh[:, 0, :]  # [L, d]
        sign = torch.where((top * mean).sum(-1) < 0, -1.0, 1.0).to(top.dtype)
        meta["pca_sign"] = "aligned with the mean difference (v . mean(D) >= 0)"
        return cls((top * sign[:, None]).float(), meta)

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
