"""SubspaceMap: low-rank linear alignment from source to target layers (fit, transfer, layer maps, diagnostics)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from unlock_eval.cache import load_artifact, save_artifact
from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.bases import Bases
from unlock_eval.methods.unlock.masterkey import MasterKey

DEFAULT_K = 16


def check_rank(k: int, n: int, center: bool = False) -> None:
    """The subspace rank k must fit the n paired prompts: k <= n, and k <= n - 1 when the states are centred."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if k > n:
        raise ConfigError(
            f"k={k} exceeds the number of prompts n={n}: the subspaces have rank at most n "
            "(use k <= n, or capture more prompts)"
        )
    if center and k > n - 1:
        raise ConfigError(
            f"k={k} with centring (aggregator=pca) needs k <= n - 1 = {n - 1}: centred states have rank at most n - 1"
        )


def relative_depth_layer_map(num_source_layers: int, num_target_layers: int) -> list[int]:
    """Source layer for each target layer t: `min(floor((L_s - 1) * t / (L_t - 1)), L_s - 1)`, 0-based."""
    if num_source_layers < 1 or num_target_layers < 1:
        raise ConfigError("layer counts must be >= 1")
    if num_target_layers == 1:
        return [num_source_layers - 1]
    return [
        min(((num_source_layers - 1) * t) // (num_target_layers - 1), num_source_layers - 1)
        for t in range(num_target_layers)
    ]


LAYER_MAPS: dict[str, Callable[[int, int], list[int]]] = {"relative_depth": relative_depth_layer_map}
DEFAULT_LAYER_MAP = "relative_depth"


def check_layer_map(layer_map: str | Sequence[int]) -> None:
    """A layer map is a name of LAYER_MAPS or an explicit list of source layers (checked against the models at fit)."""
    if isinstance(layer_map, str) and layer_map not in LAYER_MAPS:
        raise ConfigError(
            f"layer_map={layer_map!r}: allowed names are {', '.join(LAYER_MAPS)} "
            "(or an explicit list of source layers, one per target layer, such as 0;2;4)"
        )


def resolve_layer_map(layer_map, num_source: int, num_target: int) -> tuple[list[int], str]:
    if layer_map is None:
        layer_map = DEFAULT_LAYER_MAP
    check_layer_map(layer_map)
    if isinstance(layer_map, str):
        return LAYER_MAPS[layer_map](num_source, num_target), layer_map
    mapping = [int(s) for s in layer_map]
    if len(mapping) != num_target or any(not 0 <= s < num_source for s in mapping):
        raise ConfigError(
            f"explicit layer_map must list {num_target} source layers in [0, {num_source - 1}], got {mapping}"
        )
    return mapping, "explicit"


@dataclass
class SubspaceMap:
    """Per target layer t (source layer s = layer_map[t]): `r_t = ((v_s Vs_tᵀ) M_t) Vt_t`, stored factored.

    `Vs`: `[L_t, k, d_s]`, `M`: `[L_t, k, k]`, `Vt`: `[L_t, k, d_t]` (float32), never a dense d_s x d_t map.
    """

    Vs: torch.Tensor
    M: torch.Tensor
    Vt: torch.Tensor
    layer_map: list[int]
    num_source_layers: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        L_t, k, _ = self.Vt.shape
        if self.Vs.shape[:2] != (L_t, k) or self.M.shape != (L_t, k, k) or len(self.layer_map) != L_t:
            raise ConfigError(
                f"inconsistent SubspaceMap shapes: Vs {tuple(self.Vs.shape)}, M {tuple(self.M.shape)}, "
                f"Vt {tuple(self.Vt.shape)}, layer_map of length {len(self.layer_map)}"
            )
        self.layer_map = [int(s) for s in self.layer_map]

    @classmethod
    def fit(
        cls,
        source_states: torch.Tensor,
        target_states: torch.Tensor,
        k: int = DEFAULT_K,
        center: bool = False,
        layer_map: str | Sequence[int] | None = None,
        metadata: dict[str, Any] | None = None,
        source_bases: Bases | None = None,
        target_bases: Bases | None = None,
    ) -> SubspaceMap:
        """Fit the map on paired states of the same n prompts: source `[L_s, n, d_s]`, target `[L_t, n, d_t]`.

        Per target layer: `Vs`, `Vt` = top-k right singular vectors of H_s, H_t (centred first if `center`);
        `M = pinv(H_s Vsᵀ) (H_t Vtᵀ)` (least squares). `source_bases`/`target_bases`, decomposed once for a k >= this
        one (`Bases.compute`), are sliced instead of decomposing again: a grid over k decomposes each layer once.
        """
        for name, t in (("source_states", source_states), ("target_states", target_states)):
            if not isinstance(t, torch.Tensor) or t.dim() != 3:
                raise ConfigError(
                    f"{name} must be a tensor [layers, n, d], got {getattr(t, 'shape', type(t).__name__)}"
                )
        L_s, n, d_s = source_states.shape
        L_t, n_t, d_t = target_states.shape
        if n != n_t:
            raise ConfigError(f"source_states has n={n} prompts but target_states has n={n_t}; they must be paired")
        k = int(k)
        check_rank(k, n, center)
        if k > min(d_s, d_t):
            raise ConfigError(f"k={k} exceeds the hidden size (source d={d_s}, target d={d_t})")
        mapping, map_name = resolve_layer_map(layer_map, L_s, L_t)
        for name, bases in (("source_bases", source_bases), ("target_bases", target_bases)):
            layers = mapping if name == "source_bases" else range(L_t)
            if bases is not None and not bases.covers(k, layers, center):
                raise ConfigError(f"{name} (k={bases.k}, center={bases.center}) do not cover k={k}, center={center}")
        source_bases = source_bases or Bases.compute(source_states, k, center, layers=mapping)
        target_bases = target_bases or Bases.compute(target_states, k, center)
        Vs, M, Vt = [], [], []
        for t, s in enumerate(mapping):
            Hs = source_states[s].double()
            Ht = target_states[t].double()
            if center:
                Hs = Hs - Hs.mean(0, keepdim=True)
                Ht = Ht - Ht.mean(0, keepdim=True)
            vs, vt = source_bases.top(s, k), target_bases.top(t, k)
            Ps, Pt = Hs @ vs.T, Ht @ vt.T
            Vs.append(vs)
            Vt.append(vt)
            M.append(torch.linalg.pinv(Ps) @ Pt)
        meta = dict(metadata or {})
        meta.update({"k": k, "n": n, "center": bool(center), "layer_map_name": map_name})
        return cls(torch.stack(Vs).float(), torch.stack(M).float(), torch.stack(Vt).float(), mapping, L_s, meta)

    @property
    def k(self) -> int:
        return self.M.shape[-1]

    @property
    def num_target_layers(self) -> int:
        return self.Vt.shape[0]

    def transfer(self, key: MasterKey) -> MasterKey:
        """Map a source MasterKey `[L_s, d_s]` into the target space: a MasterKey `[L_t, d_t]`."""
        if key.num_layers != self.num_source_layers or key.hidden_size != self.Vs.shape[-1]:
            raise ConfigError(
                f"key of shape {tuple(key.vectors.shape)} does not fit this map, which expects "
                f"[{self.num_source_layers}, {self.Vs.shape[-1]}] source vectors"
            )
        v = key.vectors.double()[self.layer_map]  # [L_t, d_s]
        coords = torch.einsum("ld,lkd->lk", v, self.Vs.double())
        mapped = torch.einsum("lk,lkj->lj", coords, self.M.double())
        r = torch.einsum("lj,ljd->ld", mapped, self.Vt.double())
        meta = {**key.metadata, "transferred": True, "map": {**self.metadata, "layer_map": self.layer_map}}
        return MasterKey(r.float(), meta)

    def diagnostics(self, source_states: torch.Tensor, target_states: torch.Tensor) -> list[dict[str, float]]:
        """Per target layer: R² of the fit in the target subspace and the variance the top-k captures per side."""
        rows = []
        center = bool(self.metadata.get("center", False))
        for t, s in enumerate(self.layer_map):
            Hs, Ht = source_states[s].double(), target_states[t].double()
            if center:
                Hs, Ht = Hs - Hs.mean(0, keepdim=True), Ht - Ht.mean(0, keepdim=True)
            Ps, Pt = Hs @ self.Vs[t].double().T, Ht @ self.Vt[t].double().T
            resid = ((Ps @ self.M[t].double() - Pt) ** 2).sum()
            total = ((Pt - Pt.mean(0, keepdim=True)) ** 2).sum().clamp_min(1e-30)
            rows.append(
                {
                    "target_layer": t,
                    "source_layer": s,
                    "fit_r2": float(1 - resid / total),
                    "source_energy_k": float((Ps**2).sum() / (Hs**2).sum().clamp_min(1e-30)),
                    "target_energy_k": float((Pt**2).sum() / (Ht**2).sum().clamp_min(1e-30)),
                }
            )
        return rows

    def to_artifact(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The on-disk layout: tensors and metadata for `cache.save_artifact` (used by `save` and the pipeline)."""
        meta = {
            "artifact": "SubspaceMap",
            **self.metadata,
            "layer_map": self.layer_map,
            "num_source_layers": self.num_source_layers,
        }
        return {"Vs": self.Vs, "M": self.M, "Vt": self.Vt}, meta

    @classmethod
    def from_artifact(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], origin: Any = "artifact"):
        """Inverse of `to_artifact`, from what `cache.load_artifact` returns."""
        meta = dict(metadata)
        if meta.pop("artifact", None) != "SubspaceMap" or not {"Vs", "M", "Vt"} <= set(tensors):
            raise ConfigError(f"{origin} is not a SubspaceMap artifact (artifact={metadata.get('artifact')!r})")
        layer_map, num_source = meta.pop("layer_map"), meta.pop("num_source_layers")
        return cls(tensors["Vs"], tensors["M"], tensors["Vt"], layer_map, num_source, meta)

    def save(self, path: str | os.PathLike) -> str:
        """Write the map (safetensors + JSON metadata) atomically; returns the content checksum."""
        return save_artifact(path, *self.to_artifact())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SubspaceMap:
        return cls.from_artifact(*load_artifact(path), origin=path)
