"""One Unlock run's steering set-up: its key, its layers (layers=aligned), its answers' fingerprint and its record."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unlock_eval import params
from unlock_eval.cache import fingerprint
from unlock_eval.data.prompts import test_overlap
from unlock_eval.errors import ConfigError
from unlock_eval.layers import find_decoder_layers, layer_indices
from unlock_eval.method import MethodRecord
from unlock_eval.methods.spec import TransferModels
from unlock_eval.methods.unlock.diagnostics import verdict
from unlock_eval.methods.unlock.diagnostics_cache import cached_diagnostics
from unlock_eval.methods.unlock.extractor import Extractor, UnlockArtifacts, build_unlock
from unlock_eval.methods.unlock.profiles import layer_factors
from unlock_eval.methods.unlock.spec import UnlockSpec
from unlock_eval.methods.unlock.steer import Steering, profiled, steer, unit_directions


@dataclass
class SteeringSetup:
    """What steers the target: `spec` (its alpha may change: `with_alpha`), the built artifacts, the diagnostics of
    a transferred key, the resolved layers (None: all) and the cost of building them (0 when cached)."""

    spec: UnlockSpec
    artifacts: UnlockArtifacts
    diagnostics: list | None
    layers: list[int] | None
    identities: dict[str, dict]
    extraction_forward_passes: int
    subspace_decompositions: int
    dtypes: dict[str, Any]  # the concrete dtype of each stage: evaluation, key (per model), alignment (per model)
    normalize: bool = True  # False: the key is a composition of packs, steered with as it is (steer.unit_directions)
    packs: list = field(default_factory=list)  # the capability packs steered with (key=): pack_steering.PackUse

    def __post_init__(self) -> None:
        self.layer_factors()  # alpha_profile checked against the target's layers at start-up, not at the first request

    @classmethod
    def build(
        cls,
        spec: UnlockSpec,
        questions: list[str],
        model: nn.Module | None = None,
        tokenizer: Any = None,
        **extractor_kwargs: Any,
    ):
        """Key and map for the target from the artifact cache, built on a miss; `model` and `tokenizer` are the target
        when already loaded (else the extraction loads it if it needs it); `extractor_kwargs` go to
        Extractor.for_spec (dtype, device, progress, target_revision)."""
        if isinstance(spec.layers, list) and model is not None:
            layer_indices(spec.layers, len(find_decoder_layers(model, spec.layers_path)), "the target")
        preloaded = {spec.target: (model, tokenizer)} if model is not None else None
        extractor = Extractor.for_spec(spec, preloaded=preloaded, **extractor_kwargs)
        # one process builds (data-parallel ranks, or two runs started at once); the others wait, then load
        configuration = fingerprint({"config": spec.as_dict(), "dtype": extractor_kwargs["dtype"]})
        what = f"the key and map of {spec.target} from {spec.source} (n={spec.n}, k={spec.k})"
        with extractor.cache.lock("build", configuration, what=what):
            art = build_unlock(extractor, spec, questions)
            diagnostics = _diagnose(extractor, spec, questions, art.native)
        if isinstance(spec.layers, list) and model is None:
            layer_indices(spec.layers, art.target_key.num_layers, "the target")
        identities = {m: extractor.identity(m) for m in dict.fromkeys([spec.target, spec.source, spec.source_locked])}
        layers = (
            _aligned_layers(diagnostics, art.native, spec.model_induced) if spec.layers == "aligned" else spec.layers
        )
        dtypes = stage_dtypes(extractor, spec, art.native)
        # the diagnostics may capture more (the target's own key for layers=aligned): count every pass of this start
        passes, decompositions = extractor.forward_passes, extractor.decompositions
        art.models_loaded = list(extractor.loaded)
        return cls(spec, art, diagnostics, layers, identities, passes, decompositions, dtypes)

    def with_alpha(self, alpha: float, share_alphas: list[float] | None) -> SteeringSetup:
        """The same key and layers at another alpha (a sweep's next point): typed values its grid validated with the
        spec's own checks, so nothing is parsed again; nothing is built (0 passes)."""
        spec = copy.copy(self.spec)
        spec.alpha, spec.share_alphas = alpha, share_alphas
        return dataclasses.replace(self, spec=spec, extraction_forward_passes=0, subspace_decompositions=0)

    def layer_factors(self) -> dict[int, float] | None:
        """alpha_profile's factor per target layer (None: alpha everywhere)."""
        profile = self.spec.alpha_profile
        return None if profile is None else layer_factors(profile, self.artifacts.target_key.num_layers)

    def directions(self) -> dict[int, torch.Tensor]:
        """What each steered layer steers along (steer.unit_directions); layers at factor 0 are left out."""
        key = self.artifacts.target_key
        chosen = self.layers if self.layers is not None else list(range(key.num_layers))
        return profiled(unit_directions(key, chosen, self.spec.arithmetic, self.normalize), self.layer_factors())

    def fingerprint(self, alpha: float | None = None) -> str:
        """What makes one steered configuration's answers (its --use_cache table is named after this)."""
        spec = self.spec
        parts = {
            "alpha": spec.alpha if alpha is None else alpha,
            "mode": spec.mode,
            "layers": self.layers,
            "layers_path": spec.layers_path,
            "key": self.artifacts.hashes["target_key_checksum"],
            "dtype": self.dtypes["evaluation"],
        }
        # what else changes the answers, named only when not our default (earlier tables stay valid)
        for name, ours in (("arithmetic", "float32"), ("max_new_tokens", None), ("stop_strings", "task")):
            if getattr(spec, name) != ours:
                parts[name] = getattr(spec, name)
        if spec.alpha_profile is not None:
            parts["alpha_profile"] = spec.alpha_profile
        if self.packs:  # a run with packs has its own table (named by their content and weights)
            parts["packs"] = [[use.sha256, use.weight] for use in self.packs]
        return fingerprint(parts)

    @contextmanager
    def steer(self, model: nn.Module, positions: torch.Tensor | None = None, alpha=None) -> Iterator[Steering]:
        """`steer` with this run's key, mode and layers; `alpha` (one, or one per row) defaults to the spec's."""
        spec = self.spec
        alpha = spec.alpha if alpha is None else alpha
        key = self.artifacts.target_key
        factors = self.layer_factors()
        with steer(
            model, key, alpha, spec.mode, self.layers, spec.layers_path, spec.arithmetic, self.normalize, factors
        ) as handle:
            handle.positions = positions
            yield handle

    def record(self, setup_seconds: float) -> MethodRecord:
        """The results file's method record of this run."""
        if self.packs:
            from unlock_eval.methods.unlock.pack_steering import pack_record

            return pack_record(self, setup_seconds)
        spec, art = self.spec, self.artifacts
        roles = {"target": spec.target, "source": spec.source, "source_locked": spec.source_locked}
        models = set(params.names(TransferModels))
        diagnostics = self.diagnostics
        return MethodRecord.of_run(
            "native_steering" if art.native else "unlock",
            roles,
            {role: self.identities[m] for role, m in roles.items()},
            setup_seconds,
            hyperparameters={
                **{k: v for k, v in spec.as_dict().items() if k not in models},
                "layers": "all" if spec.layers is None else spec.layers,
            },
            extra_forward_passes_per_token=0,  # hooks add one vector per steered layer, no forward pass
            details={
                "source_revision": spec.source_revision,
                "layer_map_resolved": art.subspace_map.layer_map if art.subspace_map is not None else None,
                "steering_fingerprint": self.fingerprint(),
                "artifacts": art.hashes,
                "extraction_forward_passes": self.extraction_forward_passes,
                "subspace_decompositions": self.subspace_decompositions,  # per layer; 0 when cached bases covered k
                "layers_resolved": "all" if self.layers is None else self.layers,
                "dtypes": self.dtypes,
                "extraction_overlap": test_overlap(spec.extract_from, spec.n),
                "pca_sign_flipped_layers": art.source_key.metadata.get("pca_sign_flipped_layers"),
                "diagnostics": None
                if diagnostics is None
                else {
                    "verdict": verdict(diagnostics, spec.model_induced),
                    "layers": [row.as_dict() for row in diagnostics],
                },
                "models_loaded_for_extraction": list(art.models_loaded),
            },
        )


def stage_dtypes(extractor: Extractor, spec: UnlockSpec, native: bool) -> dict[str, Any]:
    """The concrete dtype of each stage: the evaluation (the target as loaded), the key's states (per model) and, for
    a transferred key, the map's states (per model)."""
    key_models = dict.fromkeys([spec.source_locked, spec.source])
    dtypes: dict[str, Any] = {
        "evaluation": extractor.dtype_of(spec.target),
        "key": {m: extractor.dtype_of(m, spec.key_dtype) for m in key_models},
    }
    if not native:
        align_models = dict.fromkeys([spec.source_locked, spec.target])
        dtypes["alignment"] = {m: extractor.dtype_of(m, spec.align_dtype) for m in align_models}
    return dtypes


def _diagnose(extractor: Extractor, spec: UnlockSpec, questions: list[str], native: bool):
    """The diagnostics of a transferred key (cached): recorded in the results file, read by layers=aligned.
    The cosine with the target's own key is included when those states are cached or layers=aligned asks."""
    if spec.layers == "aligned" and len(questions) < 4:
        raise ConfigError(
            f"layers=aligned: the diagnostics need n >= 4 prompts (held-out folds), got n={len(questions)}"
        )
    if native or len(questions) < 4:
        return None
    own_key = spec.layers == "aligned" or (
        not spec.model_induced
        and extractor.has_states(spec.target, spec.unlocked_template, questions, spec.align_dtype)
    )
    return cached_diagnostics(extractor, spec, questions, native=own_key)


def _aligned_layers(diagnostics: list | None, native: bool, model_induced: bool) -> list[int]:
    """layers=aligned: the target layers whose transferred key passes the diagnostics."""
    if native:
        raise ConfigError("layers=aligned: the source is the target itself here (native steering), so no key "
                          "was transferred; give layers=all or a list")  # fmt: skip
    layers = [row.target_layer for row in diagnostics if row.aligned]
    if not layers:
        raise ConfigError(
            f"layers=aligned: no target layer passes ({verdict(diagnostics, model_induced)}); steer all layers or a "
            "list, or raise n or change k (`unlock-eval diagnose` shows the numbers)"
        )
    return layers
