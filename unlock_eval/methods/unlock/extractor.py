"""Extraction and alignment end to end through the disk cache: capture what is missing, reuse what is there
(`Extractor`, `build_unlock`); the models come from a ModelPool, the cache keys from artifact_keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from unlock_eval.cache import ArtifactCache, fingerprint, tensors_checksum
from unlock_eval.capture import capture_final_states
from unlock_eval.data.prompts import render, template_label
from unlock_eval.faults import crash_point
from unlock_eval.methods.unlock import artifact_keys
from unlock_eval.methods.unlock.align import SubspaceMap, resolve_layer_map
from unlock_eval.methods.unlock.bases import Bases
from unlock_eval.methods.unlock.masterkey import DEFAULT_ARITHMETIC, DEFAULT_PCA_SIGN, MasterKey, centers
from unlock_eval.methods.unlock.spec import UnlockSpec
from unlock_eval.model_pool import ModelIdentities, ModelPool


class Extractor:
    """Captures states, MasterKeys and SubspaceMaps through an `ArtifactCache`, loading models only on a miss.

    `forward_passes` counts extraction forward passes (0 on a warm start), `decompositions` the per-layer subspace
    decompositions computed (0 when cached bases cover the k asked for); `loaded` lists models loaded.
    Models already in memory can be handed over in `preloaded` (spec -> (model, tokenizer)). `dtype` is the
    precision states are captured in unless a call names another (`auto`: each checkpoint's own).
    """

    def __init__(
        self,
        cache: ArtifactCache,
        dtype: str = "float32",
        device: str | None = None,
        batch_size: int = 8,
        progress: bool = True,
        revisions: dict[str, str | None] | None = None,
        preloaded: dict[str, tuple[Any, Any]] | None = None,
        layers_paths: dict[str, tuple[str | None, str]] | None = None,
    ):
        self.cache = cache
        self.dtype = dtype
        self.batch_size = batch_size
        self.progress = progress
        self.layers_paths = layers_paths or {}  # spec -> (override, the argument name users pass it as)
        self.pool = ModelPool(cache.root, device, revisions, preloaded)
        self.identities = ModelIdentities(cache.root, revisions)
        self.counter: dict[str, int] = {"forward_passes": 0, "decompositions": 0}

    @classmethod
    def for_spec(
        cls,
        spec: UnlockSpec,
        dtype: str | None = None,
        device: str | None = None,
        progress: bool = True,
        target_revision: str | None = None,
        preloaded: dict[str, tuple[Any, Any]] | None = None,
    ):
        """An extractor for the models of `spec`, with their revisions and decoder-layer overrides; `dtype` is the
        run's (default: what the spec evaluates in when none is given)."""
        models = dict.fromkeys([spec.target, spec.source, spec.source_locked])
        revisions = {m: target_revision if m == spec.target else spec.source_revision for m in models}
        return cls(
            ArtifactCache(spec.cache_dir),
            dtype=dtype or spec.default_dtype,
            device=device,
            batch_size=spec.extract_batch_size,
            progress=progress,
            revisions=revisions,
            preloaded=preloaded,
            layers_paths={m: spec.layers_path_of(m) for m in models},
        )

    @property
    def forward_passes(self) -> int:
        return self.counter["forward_passes"]

    @property
    def decompositions(self) -> int:
        return self.counter["decompositions"]

    @property
    def loaded(self) -> list[str]:
        """The models this extractor loaded itself (not those handed over), in order."""
        return self.pool.loaded

    def identity(self, spec: str) -> dict:
        """What cache keys name `spec` by (resolved once; converts and loads nothing)."""
        return self.identities(spec)

    def dtype_of(self, spec: str, dtype: str | None = None) -> str:
        """The concrete dtype `spec` is captured in: `dtype` (default this extractor's), `auto` resolved."""
        return self.identities.dtype(spec, dtype or self.dtype)

    def _states_parts(self, spec: str, template: str, questions: Sequence[str], dtype: str | None) -> dict:
        layers_path = self.layers_paths.get(spec, (None, ""))[0]
        concrete = self.dtype_of(spec, dtype)
        unpadded = self.batch_size == 1
        return artifact_keys.states_parts(self.identity(spec), template, questions, concrete, layers_path, unpadded)

    def _ref(self, spec: str, states_key: str, template: str | None = None) -> dict:
        return artifact_keys.states_ref(spec, self.identity(spec), states_key, template)

    def has_states(self, spec: str, template: str, questions: Sequence[str], dtype: str | None = None) -> bool:
        """Whether these states are in the cache already (reading them would run no forward pass)."""
        return self.cache.path("states", fingerprint(self._states_parts(spec, template, questions, dtype))).is_file()

    def states(
        self, spec: str, template: str, questions: Sequence[str], dtype: str | None = None
    ) -> tuple[torch.Tensor, str]:
        """Final-token states `[L, n, d]` (float32 copies) of `spec` in `dtype` (default this extractor's) on
        `template` filled with each question; cached."""
        layers_path, layers_arg = self.layers_paths.get(spec, (None, "layers_path"))
        parts = self._states_parts(spec, template, questions, dtype)
        key = fingerprint(parts)

        def build():
            model, tok = self.pool.get(spec, parts["dtype"])
            states = capture_final_states(
                model,
                tok,
                [render(template, q) for q in questions],
                batch_size=self.batch_size,
                layers_path=layers_path,
                layers_arg=layers_arg,
                progress=self.progress,
                desc=f"capture {spec} ({template_label(template)}, {parts['dtype']})",
                counter=self.counter,
            )
            return {"states": states}, {"artifact": "states", "model_spec": spec, **parts}

        tensors, _ = self.cache.get_or_build("states", key, build)
        return tensors["states"], key

    def bases(
        self,
        spec: str,
        template: str,
        questions: Sequence[str],
        k: int,
        center: bool,
        layers: Sequence[int],
        dtype: str | None = None,
    ) -> Bases:
        """Top-k bases of these states' `layers`; cached beside the states, one artifact per (states, center).

        A stored artifact for a k' >= k that covers the layers is sliced; otherwise the layers are decomposed again
        for max(k, k') and the union of layers, and the artifact is replaced (so a grid run largest k first, like
        `unlock-eval sweep` does, decomposes each layer once)."""
        states, states_key = self.states(spec, template, questions, dtype)
        parts = artifact_keys.bases_parts(states_key, center)
        stored: list[Bases] = []

        def accept(tensors, meta) -> bool:
            stored[:] = [Bases.from_artifact(tensors, meta)]
            return stored[0].covers(k, layers, center)

        def build():
            previous = stored[0] if stored else None
            wanted_k = max(k, previous.k if previous else 0)
            wanted_layers = set(layers) | set(previous.vectors if previous else ())
            bases = Bases.compute(states, wanted_k, center, wanted_layers, counter=self.counter)
            bases.metadata = {"model_spec": spec, "n": len(questions), **parts}
            return bases.to_artifact()

        return Bases.from_artifact(*self.cache.get_or_build("bases", fingerprint(parts), build, accept=accept))

    def masterkey(
        self,
        locked_spec: str,
        unlocked_spec: str,
        locked_template: str,
        unlocked_template: str,
        questions: Sequence[str],
        aggregator: str,
        dtype: str | None = None,
        pca_sign: str = DEFAULT_PCA_SIGN,
        arithmetic: str = DEFAULT_ARITHMETIC,
    ) -> tuple[MasterKey, str]:
        """The key of these two (model, template) pairs, their states captured in `dtype` (see MasterKey.from_states
        for `pca_sign` and `arithmetic`); cached."""
        locked, locked_key = self.states(locked_spec, locked_template, questions, dtype)
        unlocked, unlocked_key = self.states(unlocked_spec, unlocked_template, questions, dtype)
        locked_ref = self._ref(locked_spec, locked_key, locked_template)
        unlocked_ref = self._ref(unlocked_spec, unlocked_key, unlocked_template)
        captured = self.dtype_of(unlocked_spec, dtype)
        meta = artifact_keys.masterkey_parts(
            locked_ref, unlocked_ref, aggregator, questions, captured, pca_sign, arithmetic
        )
        key = fingerprint(meta)

        def build():
            return MasterKey.from_states(
                locked,
                unlocked,
                aggregator=aggregator,
                metadata=meta,
                pca_sign=pca_sign,
                arithmetic=arithmetic,
                states_dtype=getattr(torch, captured),
            ).to_artifact()

        return MasterKey.from_artifact(*self.cache.get_or_build("masterkey", key, build)), key

    def subspace_map(
        self,
        source_spec: str,
        target_spec: str,
        template: str,
        questions: Sequence[str],
        k: int,
        center: bool,
        layer_map: str | Sequence[int] | None,
        dtype: str | None = None,
    ) -> tuple[SubspaceMap, str]:
        """The map fitted on both models' states of `template`, captured in `dtype`; cached."""
        source, source_key = self.states(source_spec, template, questions, dtype)
        target, target_key = self.states(target_spec, template, questions, dtype)
        source_ref, target_ref = self._ref(source_spec, source_key), self._ref(target_spec, target_key)
        meta = artifact_keys.subspace_map_parts(
            source_ref, target_ref, template, questions, self.dtype_of(target_spec, dtype), k, center, layer_map
        )
        key = fingerprint(meta)

        def build():
            mapping, _ = resolve_layer_map(layer_map, source.shape[0], target.shape[0])
            source_bases = self.bases(source_spec, template, questions, k, center, mapping, dtype)
            target_bases = self.bases(target_spec, template, questions, k, center, range(target.shape[0]), dtype)
            crash_point("map_fit")  # killed between the decompositions and the map: the bases stay, the map is refit
            return SubspaceMap.fit(
                source, target, k, center, layer_map, meta, source_bases=source_bases, target_bases=target_bases
            ).to_artifact()

        return SubspaceMap.from_artifact(*self.cache.get_or_build("subspacemap", key, build)), key


@dataclass
class UnlockArtifacts:
    """What the target is steered with, and everything needed to say how it was made."""

    target_key: MasterKey
    source_key: MasterKey
    subspace_map: SubspaceMap | None
    native: bool
    hashes: dict[str, str] = field(default_factory=dict)
    forward_passes: int = 0
    models_loaded: list[str] = field(default_factory=list)
    decompositions: int = 0


def build_unlock(extractor: Extractor, spec: UnlockSpec, questions: Sequence[str]) -> UnlockArtifacts:
    """MasterKey from (source_locked, locked_template) vs (source, unlocked_template), mapped into the target.

    When the target is the source itself (native steering) no alignment is fitted. The alignment uses the
    source-locked and target states on the locked template; `pca` centres them first, as the reference.
    """
    key, key_hash = extractor.masterkey(
        spec.source_locked,
        spec.source,
        spec.locked_template,
        spec.unlocked_template,
        questions,
        spec.aggregator,
        spec.key_dtype,
        spec.pca_sign,
        spec.arithmetic,
    )
    hashes = {"source_key": key_hash, "source_key_checksum": tensors_checksum({"v": key.vectors})[:24]}
    identity = extractor.identity
    native = identity(spec.target) in (identity(spec.source), identity(spec.source_locked))
    smap = None
    if native:
        target_key = key
    else:
        smap, map_hash = extractor.subspace_map(
            spec.source_locked,
            spec.target,
            spec.locked_template,
            questions,
            spec.k,
            center=centers(spec.aggregator),
            layer_map=spec.layer_map,
            dtype=spec.align_dtype,
        )
        target_key = smap.transfer(key)
        hashes["subspace_map"] = map_hash
    hashes["target_key_checksum"] = tensors_checksum({"v": target_key.vectors})[:24]
    return UnlockArtifacts(
        target_key,
        key,
        smap,
        native,
        hashes,
        extractor.forward_passes,
        list(extractor.loaded),
        extractor.decompositions,
    )
