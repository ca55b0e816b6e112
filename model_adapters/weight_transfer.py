"""`lm_eval --model weight_transfer`: HFLM on θ_target + lam·(θ_source − θ_source_locked), merged once and cached."""

from __future__ import annotations

import logging
import time
from typing import Any

from unlock_eval.method import ROLES, MethodRecord
from unlock_eval.methods.weight_transfer.merge import merged_model, model_folder
from unlock_eval.methods.weight_transfer.spec import WeightTransferSpec
from unlock_eval.model_adapters.arguments import resolve_roles
from unlock_eval.model_adapters.base import TransferLM

logger = logging.getLogger("lm_eval.models.weight_transfer")


class WeightTransferLM(TransferLM):
    """Task arithmetic as an lm-eval model: the merged weights are an ordinary model folder in the cache, which
    HFLM then loads like any `pretrained=` (no hooks, no extra forward passes)."""

    MODEL, SPEC = "weight_transfer", WeightTransferSpec

    def __init__(self, **kwargs: Any) -> None:
        t0 = time.perf_counter()
        spec, hf_kwargs = self._parse(kwargs)
        self.transfer_config: WeightTransferSpec = spec
        revisions = {
            "target": hf_kwargs.pop("revision", None),
            "source": spec.source_revision,
            "source_locked": spec.source_revision,
        }
        specs = {role: getattr(spec, role) for role in ROLES}
        resolved = resolve_roles(spec, revisions)
        identities = {role: resolved[role].identity for role in ROLES}
        folder, cached = merged_model(
            {role: model_folder(resolved[role]) for role in ROLES},
            identities,
            spec.lam,
            labels=specs,
            vocab=spec.vocab,
            cache_dir=spec.cache_dir,
            progress=True,
        )
        self._start(str(folder), hf_kwargs)
        self.cache_table = self._table(folder.name)
        setup = time.perf_counter() - t0
        self.run_record = MethodRecord.of_run(
            "weight_transfer",
            specs,
            identities,
            setup,
            hyperparameters={"lam": spec.lam, "vocab": spec.vocab},
            extra_forward_passes_per_token=0,
            details={"merged_model": str(folder), "merge_reused": cached},
        )
        state = "cached" if cached else "new"
        logger.info("weight_transfer: ready in %.1f s (%s merged model %s)", setup, state, folder)
