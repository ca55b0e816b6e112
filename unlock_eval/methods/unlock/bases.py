"""Top-k subspace bases of captured states: one decomposition per layer, computed for the largest k and sliced.

`SubspaceMap.fit` needs, per layer, the top-k right singular vectors of the `[n, d]` final-token states. A full
SVD costs about n²d with a large constant; the same vectors come from the eigendecomposition of the smaller of
the Gram matrix `H Hᵀ` (n x n) and the covariance `Hᵀ H` (d x d): one matrix product (BLAS) and one symmetric
eigendecomposition, in float64. The basis inside a subspace may differ from the SVD's (signs, rotations within
repeated singular values), and the transfer does not depend on it. Bases computed for k = K serve every k <= K by
slicing, so a grid over k decomposes each layer once (the pipeline caches them beside the states).

Directions whose squared singular value is at the rounding noise of the float64 product (`σ² <= σ_max² · max(n, d)
· eps`, i.e. σ/σ_max below about 1e-7, the precision of float32 states) are stored as zero rows and counted in
`rank`: the map then ignores them, as `pinv` ignores directions it cannot resolve.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from unlock_eval.errors import ConfigError


def _zero_cut(eigvals: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """Eigenvalues of H Hᵀ (or Hᵀ H) at or below this are rounding noise of the float64 product."""
    return eigvals[-1].clamp_min(0) * max(n, d) * torch.finfo(torch.float64).eps


def top_right_singular(states: torch.Tensor, k: int, center: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k right singular vectors `[k, d]` and singular values `[k]` of `[n, d]` states (float64)."""
    H = states.double()
    if center:
        H = H - H.mean(0, keepdim=True)
    n, d = H.shape
    if not 1 <= k <= min(n, d):
        raise ConfigError(f"k={k}: a [{n}, {d}] state matrix has at most {min(n, d)} singular directions")
    if n <= d:  # Gram: H Hᵀ = U Σ² Uᵀ, V = Σ⁻¹ Uᵀ H
        eigvals, U = torch.linalg.eigh(H @ H.T)
        U = U[:, -k:].flip(1)
        top = eigvals[-k:].flip(0)
        keep = top > _zero_cut(eigvals, n, d)
        sigma = top.clamp_min(0).sqrt()
        V = torch.zeros(k, d, dtype=torch.float64)
        V[keep] = (U[:, keep].T @ H) / sigma[keep, None]
    else:  # covariance: Hᵀ H = V Σ² Vᵀ
        eigvals, W = torch.linalg.eigh(H.T @ H)
        V = W[:, -k:].flip(1).T.contiguous()
        top = eigvals[-k:].flip(0)
        V[top <= _zero_cut(eigvals, n, d)] = 0
        sigma = top.clamp_min(0).sqrt()
    return V, sigma


@dataclass
class Bases:
    """Per layer of one states tensor: top-`k` right singular vectors (`vectors[layer]`: `[k, d]` float64) and
    singular values, of the raw or centred states. Serves any k' <= k through `top(layer, k')`."""

    vectors: dict[int, torch.Tensor]
    values: dict[int, torch.Tensor]
    k: int
    center: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def compute(
        cls,
        states: torch.Tensor,
        k: int,
        center: bool = False,
        layers: Iterable[int] | None = None,
        counter: dict[str, int] | None = None,
    ) -> Bases:
        """Decompose `layers` (default: all) of `[L, n, d]` states; `counter["decompositions"]` counts layers."""
        chosen = sorted(set(range(states.shape[0]) if layers is None else layers))
        vectors, values = {}, {}
        for layer in chosen:
            vectors[layer], values[layer] = top_right_singular(states[layer], k, center)
            if counter is not None:
                counter["decompositions"] = counter.get("decompositions", 0) + 1
        return cls(vectors, values, int(k), bool(center))

    def covers(self, k: int, layers: Iterable[int], center: bool) -> bool:
        return self.center == bool(center) and self.k >= k and set(layers) <= set(self.vectors)

    def top(self, layer: int, k: int) -> torch.Tensor:
        if k > self.k or layer not in self.vectors:
            raise ConfigError(
                f"bases hold k={self.k} for layers {sorted(self.vectors)}; asked for k={k}, layer {layer}"
            )
        return self.vectors[layer][:k]

    def rank(self, layer: int) -> int:
        """Directions above the numerical-zero cut among the stored k (k when the states have full rank)."""
        return int((self.vectors[layer].abs().sum(1) > 0).sum())

    def to_artifact(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        layers = sorted(self.vectors)
        tensors = {
            "vectors": torch.stack([self.vectors[layer] for layer in layers]),
            "values": torch.stack([self.values[layer] for layer in layers]),
        }
        meta = {"artifact": "Bases", **self.metadata, "k": self.k, "center": self.center, "layers": layers}
        return tensors, meta

    @classmethod
    def from_artifact(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Bases:
        meta = dict(metadata)
        if meta.pop("artifact", None) != "Bases":
            raise ConfigError(f"not a Bases artifact (artifact={metadata.get('artifact')!r})")
        layers, k, center = meta.pop("layers"), meta.pop("k"), meta.pop("center")
        vectors = {layer: tensors["vectors"][i] for i, layer in enumerate(layers)}
        values = {layer: tensors["values"][i] for i, layer in enumerate(layers)}
        return cls(vectors, values, int(k), bool(center), meta)
