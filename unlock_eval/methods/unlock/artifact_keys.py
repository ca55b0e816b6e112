"""The cache keys of Unlock's artifacts (states, MasterKey, bases, SubspaceMap, diagnostics), each built here once.

Each function returns an artifact's parts: its key is `cache.fingerprint(parts)` and the parts go into its metadata.
A changed field invalidates every cache built before it (keys are sorted JSON, so the order of fields is free).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

CAPTURE_VERSION = 1
BASES_VERSION = 1
DIAGNOSTICS_VERSION = 1


def prompts_hash(questions: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(questions)).encode()).hexdigest()[:24]


def _prompt_set(questions: Sequence[str], dtype: str) -> dict:
    """The prompts and the capture precision, shared by every artifact made from captured states."""
    return {"n": len(questions), "prompts": prompts_hash(questions), "dtype": str(dtype)}


def states_ref(model: str, identity: dict, states_key: str, template: str | None = None) -> dict:
    """How an artifact made from captured states names them: the model spec, its identity, (the template,) the key."""
    ref = {"model": model, "identity": identity}
    if template is not None:
        ref["template"] = template
    ref["states"] = states_key
    return ref


def states_parts(
    identity: dict,
    template: str,
    questions: Sequence[str],
    dtype: str,
    layers_path: str | None = None,
    unpadded: bool = False,
) -> dict:
    """Final-token states of one model on one template over these prompts; `unpadded`: captured one prompt at a time
    (in bf16 a left-padded batch moves the states, so the reference protocol's capture is an artifact of its own)."""
    parts = {"model": identity, "template": template, **_prompt_set(questions, dtype)}
    parts["capture_version"] = CAPTURE_VERSION
    if layers_path:
        parts["layers_path"] = layers_path
    if unpadded:
        parts["unpadded"] = True
    return parts


def bases_parts(states_key: str, center: bool) -> dict:
    """Top-k bases of one states artifact (any k: a stored larger k serves a smaller one)."""
    return {"states": states_key, "center": bool(center), "bases_version": BASES_VERSION}


def masterkey_parts(
    locked: dict,
    unlocked: dict,
    aggregator: str,
    questions: Sequence[str],
    dtype: str,
    pca_sign: str = "mean",
    arithmetic: str = "float32",
) -> dict:
    """A MasterKey from the locked and unlocked states (`states_ref`, each with its template). The reference's
    choices (raw PCA sign, arithmetic in the models' dtype) are named only when made, so earlier keys stay valid."""
    parts = {"locked": locked, "unlocked": unlocked, "aggregator": aggregator, **_prompt_set(questions, dtype)}
    if aggregator == "pca" and pca_sign != "mean":
        parts["pca_sign"] = pca_sign
    if arithmetic != "float32":
        parts["arithmetic"] = arithmetic
    return parts


def subspace_map_parts(
    source: dict,
    target: dict,
    template: str,
    questions: Sequence[str],
    dtype: str,
    k: int,
    center: bool,
    layer_map: str | Sequence[int] | None,
) -> dict:
    """A SubspaceMap fitted on the source and target states (`states_ref`) of one template."""
    return {
        "source": source,
        "target": target,
        "template": template,
        **_prompt_set(questions, dtype),
        "k": int(k),
        "center": bool(center),
        "layer_map": layer_map if isinstance(layer_map, str) or layer_map is None else list(layer_map),
    }


def diagnostics_parts(
    state_keys: list[str], k: int, aggregator: str, folds: int, layer_map: str | Sequence[int] | None
) -> dict:
    """The per-layer diagnostics rows of a pair, from its states' keys (source locked/unlocked, target, [native])."""
    return {"states": state_keys, "k": k, "aggregator": aggregator, "folds": folds, "layer_map": layer_map,
            "version": DIAGNOSTICS_VERSION}  # fmt: skip
