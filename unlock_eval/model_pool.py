"""The models one run works with: loaded once on first use or handed over (ModelPool), and named for cache keys
without loading anything (ModelIdentities)."""

from __future__ import annotations

import gc
import os
from typing import Any

import torch

from unlock_eval.models import canonical_dtype, concrete_dtype, load_model, resolve_model


class ModelIdentities:
    """Each model spec's identity (what cache keys name it by: content hashes, resolved revisions), resolved once.

    Resolving converts and loads nothing, so a warm start that only reads the cache never touches a model.
    """

    def __init__(self, cache_dir: str | os.PathLike, revisions: dict[str, str | None] | None = None):
        self.cache_dir = cache_dir
        self.revisions = revisions or {}
        self._known: dict[str, Any] = {}

    def _resolved(self, spec: str):
        if spec not in self._known:
            self._known[spec] = resolve_model(
                spec, revision=self.revisions.get(spec), cache_dir=self.cache_dir, convert=False
            )
        return self._known[spec]

    def __call__(self, spec: str) -> dict:
        return self._resolved(spec).identity

    def dtype(self, spec: str, dtype: str) -> str:
        """`dtype` in its canonical name, `auto` resolved to `spec`'s checkpoint dtype (reads its config only)."""
        name = canonical_dtype(dtype)
        return concrete_dtype(name, self._resolved(spec)) if name == "auto" else name


class ModelPool:
    """Models by (spec, dtype), each loaded on first use; models already in memory are handed over in `preloaded`
    (spec -> (model, tokenizer), in the model's own dtype). The pool holds one model of its own at a time: loading
    another frees the previous one (extraction captures one model after the other, and a reference protocol loads
    the same checkpoint in two dtypes). `loaded` lists the specs this pool loaded itself, in order (`spec (dtype)`
    for a second dtype of one checkpoint)."""

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        device: str | None = None,
        revisions: dict[str, str | None] | None = None,
        preloaded: dict[str, tuple[Any, Any]] | None = None,
    ):
        self.cache_dir = cache_dir
        self.device = device
        self.revisions = revisions or {}
        self.preloaded: dict[tuple[str, str], tuple[Any, Any]] = {}
        for spec, (model, tokenizer) in (preloaded or {}).items():
            self.preloaded[(spec, canonical_dtype(next(model.parameters()).dtype))] = (model, tokenizer)
        self._dtypes_loaded: dict[str, set[str]] = {}
        self.current: tuple[tuple[str, str], tuple[Any, Any]] | None = None
        self.loaded: list[str] = []

    def get(self, spec: str, dtype: str) -> tuple[Any, Any]:
        """(model, tokenizer) of `spec` in `dtype` (a concrete, canonical name), loaded now unless held."""
        wanted = (spec, dtype)
        if wanted in self.preloaded:
            return self.preloaded[wanted]
        if self.current is None or self.current[0] != wanted:
            self.release()
            model = load_model(spec, dtype=dtype, device=self.device, revision=self.revisions.get(spec),
                               cache_dir=self.cache_dir)  # fmt: skip
            self.current = (wanted, model)
            seen = self._dtypes_loaded.setdefault(spec, set())
            if dtype not in seen:  # a second dtype of one checkpoint is a load of its own
                self.loaded.append(spec if not seen else f"{spec} ({dtype})")
                seen.add(dtype)
        return self.current[1]

    def release(self) -> None:
        """Free the model this pool loaded itself (handed-over models stay with their owner)."""
        if self.current is not None:
            self.current = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
