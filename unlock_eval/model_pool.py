"""The models one run works with: loaded once on first use or handed over (ModelPool), and named for cache keys
without loading anything (ModelIdentities)."""

from __future__ import annotations

import os
from typing import Any

from unlock_eval.models import load_model, resolve_model


class ModelIdentities:
    """Each model spec's identity (what cache keys name it by: content hashes, resolved revisions), resolved once.

    Resolving converts and loads nothing, so a warm start that only reads the cache never touches a model.
    """

    def __init__(self, cache_dir: str | os.PathLike, revisions: dict[str, str | None] | None = None):
        self.cache_dir = cache_dir
        self.revisions = revisions or {}
        self._known: dict[str, dict] = {}

    def __call__(self, spec: str) -> dict:
        if spec not in self._known:
            resolved = resolve_model(spec, revision=self.revisions.get(spec), cache_dir=self.cache_dir, convert=False)
            self._known[spec] = resolved.identity
        return self._known[spec]


class ModelPool:
    """Models by spec, each loaded on first use and kept; models already in memory are handed over in `preloaded`
    (spec -> (model, tokenizer)). `loaded` lists the specs this pool loaded itself, in order."""

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        dtype: str = "float32",
        device: str | None = None,
        revisions: dict[str, str | None] | None = None,
        preloaded: dict[str, tuple[Any, Any]] | None = None,
    ):
        self.cache_dir = cache_dir
        self.dtype = dtype
        self.device = device
        self.revisions = revisions or {}
        self.models: dict[str, tuple[Any, Any]] = dict(preloaded or {})
        self.loaded: list[str] = []

    def get(self, spec: str) -> tuple[Any, Any]:
        """(model, tokenizer) of `spec`, loaded now if this pool does not hold it yet."""
        if spec not in self.models:
            self.models[spec] = load_model(
                spec, dtype=self.dtype, device=self.device, revision=self.revisions.get(spec), cache_dir=self.cache_dir
            )
            self.loaded.append(spec)
        return self.models[spec]
