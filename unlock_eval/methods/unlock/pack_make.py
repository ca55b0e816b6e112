"""Making a CapabilityPack from a run's steering set-up: its key, map and diagnostics (from the artifact cache) and the
provenance that lets anyone check what it is without the source model."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

import torch

from unlock_eval.methods.unlock.extractor import Extractor
from unlock_eval.methods.unlock.pack import CapabilityPack
from unlock_eval.methods.unlock.steering import SteeringSetup
from unlock_eval.models import checkpoint_config, resolve_model


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def target_norms(setup: SteeringSetup, questions: list[str], dtype: str) -> torch.Tensor:
    """Mean norm of the target's final-token states per layer `[L_t]`, from the states the run captured (cached: a
    transferred key's alignment states, a native key's own states of the target)."""
    spec, art = setup.spec, setup.artifacts
    extractor = Extractor.for_spec(spec, dtype=dtype, progress=False)
    if not art.native:
        states, _ = extractor.states(spec.target, spec.locked_template, questions, spec.align_dtype)
    else:
        identity = extractor.identity
        locked = identity(spec.target) == identity(spec.source_locked)
        template = spec.locked_template if locked else spec.unlocked_template
        states, _ = extractor.states(spec.target, template, questions, spec.key_dtype)
    return states.double().norm(dim=-1).mean(dim=1).float()


def model_type(spec: str, revision: str | None, cache_dir: str | None) -> str | None:
    """The target's `config.json` model_type (what a llama.cpp export names as its model hint); None when unknown."""
    try:
        return checkpoint_config(resolve_model(spec, revision=revision, cache_dir=cache_dir)).get("model_type")
    except Exception:  # noqa: BLE001 - a hint only: the export then asks for it
        return None


def pack_of(
    setup: SteeringSetup,
    questions: list[str],
    dtype: str,
    target_revision: str | None = None,
    applied: dict[str, Any] | None = None,
) -> CapabilityPack:
    """The pack of `setup` (built by SteeringSetup.build on `questions` with evaluation dtype `dtype`); `applied`:
    what a results folder's run steered with (alpha, mode, layers, tasks and scores), kept as it is."""
    from unlock_eval import __version__

    spec, art = setup.spec, setup.artifacts
    revisions = {"target": target_revision, "source": spec.source_revision, "source_locked": spec.source_revision}
    models = {
        role: {
            "spec": getattr(spec, role),
            "identity": setup.identities[getattr(spec, role)],
            "revision": revisions[role],
        }
        for role in ("target", "source", "source_locked")
    }
    details = setup.record(0.0).details
    hyper = {k: v for k, v in spec.as_dict().items() if k not in ("cache_dir", "key", "key_weights", "share_alphas")}
    hyper["layers"] = "all" if spec.layers is None else spec.layers
    provenance = {
        "unlock_eval_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": models,
        "target_shape": {"num_layers": art.target_key.num_layers, "hidden_size": art.target_key.hidden_size},
        "source_shape": {"num_layers": art.source_key.num_layers, "hidden_size": art.source_key.hidden_size},
        "target_model_type": model_type(spec.target, target_revision, spec.cache_dir),
        "method": "native_steering" if art.native else "unlock",
        "hyperparameters": hyper,
        "templates": {
            "locked": spec.locked_template,
            "unlocked": spec.unlocked_template,
            "locked_sha256": sha256_text(spec.locked_template),
            "unlocked_sha256": sha256_text(spec.unlocked_template),
        },
        "extraction": {
            "extract_from": spec.extract_from,
            "n": len(questions),
            "questions_sha256": sha256_text(json.dumps(list(questions))),
            "overlap": details["extraction_overlap"],
            "model_induced": spec.model_induced,
        },
        "layer_map": details["layer_map_resolved"],
        "dtypes": setup.dtypes,
        "diagnostics": details["diagnostics"],
        "hashes": art.hashes,
        "applied": applied,
    }
    norms = target_norms(setup, questions, dtype)
    return CapabilityPack(art.target_key, art.source_key, art.subspace_map, norms, provenance)
