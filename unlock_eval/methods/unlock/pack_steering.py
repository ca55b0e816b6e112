"""Steering with capability packs (key=): load and check them against the target, compose them, and record the run."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from unlock_eval import params
from unlock_eval.cache import sha256_of, tensors_checksum
from unlock_eval.errors import ConfigError
from unlock_eval.method import MethodRecord
from unlock_eval.methods.spec import TransferModels
from unlock_eval.methods.unlock.diagnostics import LayerDiagnostics, verdict
from unlock_eval.methods.unlock.extractor import UnlockArtifacts
from unlock_eval.methods.unlock.pack import CapabilityPack, compose
from unlock_eval.methods.unlock.spec import PACK_FIXED, UnlockSpec
from unlock_eval.methods.unlock.steering import SteeringSetup

logger = logging.getLogger("lm_eval.models.unlock")


@dataclass
class PackUse:
    """One pack of a run: where it was read, its file's sha256, its weight and its content."""

    path: str
    sha256: str
    weight: float
    pack: CapabilityPack

    def describe(self) -> dict[str, Any]:
        """What the results record says of it."""
        made = self.pack.provenance
        return {
            "path": self.path,
            "sha256": self.sha256,
            "weight": self.weight,
            "source": made["models"]["source"]["spec"],
            "source_locked": made["models"]["source_locked"]["spec"],
            "made_for_target": made["models"]["target"]["spec"],
            "created": made["created"],
            "unlock_eval_version": made["unlock_eval_version"],
            "hyperparameters": made["hyperparameters"],
        }


def load_packs(spec: UnlockSpec) -> list[PackUse]:
    """The packs named by key= with their weights (read and checked; nothing about the target yet)."""
    weights = spec.key_weights or [1.0] * len(spec.key)
    uses = []
    for path, weight in zip(spec.key, weights):
        pack = CapabilityPack.load(path, "key")
        uses.append(PackUse(path, sha256_of(path), weight, pack))
    return uses


def check_target(uses: list[PackUse], spec: UnlockSpec, identity: dict[str, Any]) -> None:
    """Refuse a target the packs were not made for (key_target_check=identity; `shape` skips this check)."""
    if spec.key_target_check == "identity":
        for use in uses:
            use.pack.check_target(identity, spec.target, f"key={use.path}")


def check_shape(uses: list[PackUse], spec: UnlockSpec, num_layers: int, hidden_size: int | None) -> None:
    for use in uses:
        use.pack.check_shape(num_layers, hidden_size, spec.target, f"key={use.path}")


def setup_from_packs(
    spec: UnlockSpec, uses: list[PackUse], identity: dict[str, Any], evaluation_dtype: str
) -> SteeringSetup:
    """The run's steering from its packs: nothing extracted, no source loaded. One pack at weight 1 steers with its
    own key exactly as the run that made it; several (or key_weights) with their composition (pack.compose)."""
    packs = [use.pack for use in uses]
    if len(uses) == 1 and spec.key_weights is None:
        key, normalize = packs[0].target_key, True
    else:
        key, normalize = compose(packs, [use.weight for use in uses], [f"key={use.path}" for use in uses]), False
    first = packs[0]
    hashes = {
        **(first.provenance["hashes"] if len(uses) == 1 else {}),
        "target_key_checksum": tensors_checksum({"v": key.vectors})[:24],
        "packs": [{"path": use.path, "sha256": use.sha256} for use in uses],
    }
    native = len(uses) == 1 and first.subspace_map is None
    artifacts = UnlockArtifacts(key, first.source_key, first.subspace_map, native, hashes)
    diagnostics = [_rows(use) for use in uses]
    layers = _aligned(uses, diagnostics) if spec.layers == "aligned" else spec.layers
    dtypes = {"evaluation": evaluation_dtype}
    if len(uses) == 1:
        dtypes.update({k: v for k, v in first.provenance["dtypes"].items() if k != "evaluation"})
    setup = SteeringSetup(spec, artifacts, diagnostics[0] if len(uses) == 1 else None, layers,
                          {spec.target: identity}, 0, 0, dtypes, normalize, uses)  # fmt: skip
    for use in uses:
        applied = use.pack.provenance.get("applied")
        if applied:
            logger.info("unlock: %s was made by a run steering at %s", use.path, _settings(applied))
    return setup


def _settings(applied: dict[str, Any]) -> str:
    return ", ".join(f"{name}={applied[name]}" for name in ("alpha", "mode", "layers") if name in applied)


def _rows(use: PackUse) -> list[LayerDiagnostics] | None:
    diagnostics = use.pack.provenance["diagnostics"]
    if not diagnostics:
        return None
    names = {f.name for f in dataclasses.fields(LayerDiagnostics)}
    return [LayerDiagnostics(**{k: v for k, v in row.items() if k in names}) for row in diagnostics["layers"]]


def _aligned(uses: list[PackUse], diagnostics: list) -> list[int]:
    """layers=aligned with packs: the layers that pass in every pack's diagnostics."""
    chosen: set[int] | None = None
    for use, rows in zip(uses, diagnostics):
        if rows is None:
            raise ConfigError(
                f"layers=aligned: key={use.path} carries no diagnostics (native, or made from n < 4 prompts); give "
                "layers=all or a list"
            )
        passing = {row.target_layer for row in rows if row.aligned}
        chosen = passing if chosen is None else chosen & passing
    if not chosen:
        raise ConfigError("layers=aligned: no target layer passes the diagnostics of every pack in key=; give a list")
    return sorted(chosen)


RUN_TIME = tuple(name for name in params.names(UnlockSpec) if name not in PACK_FIXED and name != "cache_dir")


def pack_record(setup: SteeringSetup, setup_seconds: float) -> MethodRecord:
    """The record of a run with packs: the pack's models and extraction arguments (one pack), this run's steering
    arguments, and each pack named by path and sha256."""
    spec, uses = setup.spec, setup.packs
    single = len(uses) == 1
    made = [use.pack.provenance for use in uses]
    roles = {"target": spec.target}
    identities: dict[str, Any] = {"target": setup.identities[spec.target]}
    for role in ("source", "source_locked"):
        roles[role] = " + ".join(dict.fromkeys(m["models"][role]["spec"] for m in made))
        identities[role] = made[0]["models"][role]["identity"] if single else [m["models"][role] for m in made]
    models = set(params.names(TransferModels))
    ours = {k: v for k, v in spec.as_dict().items() if k in RUN_TIME and k not in models}
    hyper = {**({k: v for k, v in made[0]["hyperparameters"].items() if k not in models} if single else {}), **ours}
    hyper["layers"] = "all" if spec.layers is None else spec.layers
    diagnostics = setup.diagnostics
    art = setup.artifacts
    return MethodRecord.of_run(
        "native_steering" if art.native else "unlock",
        roles,
        identities,
        setup_seconds,
        hyperparameters=hyper,
        extra_forward_passes_per_token=0,
        details={
            "packs": [use.describe() for use in uses],
            "source_revision": made[0]["hyperparameters"].get("source_revision") if single else None,
            "layer_map_resolved": art.subspace_map.layer_map if single and art.subspace_map is not None else None,
            "steering_fingerprint": setup.fingerprint(),
            "artifacts": art.hashes,
            "extraction_forward_passes": 0,
            "subspace_decompositions": 0,
            "layers_resolved": "all" if setup.layers is None else setup.layers,
            "dtypes": setup.dtypes,
            "extraction_overlap": made[0]["extraction"].get("overlap") if single else None,
            "pca_sign_flipped_layers": art.source_key.metadata.get("pca_sign_flipped_layers") if single else None,
            "diagnostics": None
            if diagnostics is None
            else {
                "verdict": verdict(diagnostics, made[0]["extraction"]["model_induced"]),
                "layers": [row.as_dict() for row in diagnostics],
            },
            "models_loaded_for_extraction": [],
        },
    )
