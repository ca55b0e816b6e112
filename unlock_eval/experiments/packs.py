"""Capability packs made from what a user has: --model_args (the artifact cache, extracting on a miss), a results folder
of one --model unlock run (its own key, checked against its record), and their export for llama.cpp."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from unlock_eval.cache import sha256_of
from unlock_eval.errors import ConfigError
from unlock_eval.method import RECORD_KEY
from unlock_eval.methods.unlock.pack import CapabilityPack
from unlock_eval.methods.unlock.steer import DEFAULT_ALPHA, unit_vector

logger = logging.getLogger(__name__)


def _device(kwargs: dict[str, Any]) -> str:
    return str(kwargs.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))


def _build(spec, dtype: str, device: str, target_revision: str | None, applied: dict | None = None):
    from unlock_eval.data.prompts import load_questions
    from unlock_eval.methods.unlock.pack_make import pack_of
    from unlock_eval.methods.unlock.steering import SteeringSetup

    questions = load_questions(spec.extract_from, spec.n)
    setup = SteeringSetup.build(spec, questions, dtype=dtype, device=device, progress=True,
                                target_revision=target_revision)  # fmt: skip
    return setup, lambda: pack_of(setup, questions, dtype, target_revision, applied)


def pack_from_model_args(model_args: str) -> CapabilityPack:
    """The pack of the transfer `model_args` names (as --model unlock takes them): key and map from the cache, built
    on a miss."""
    from unlock_eval.experiments.grid import base_arguments
    from unlock_eval.model_adapters.arguments import parse_unlock_model_args

    kwargs = base_arguments(model_args)
    if kwargs.get("key") not in (None, ""):
        raise ConfigError("--model_args key=...: that is a pack already (--from PACK --format gguf exports it)")
    spec, engine_kwargs = parse_unlock_model_args(kwargs)
    _, make = _build(spec, engine_kwargs["dtype"], _device(engine_kwargs), engine_kwargs.get("revision"))
    return make()


def _unlock_runs(path: str) -> list[tuple[Path, dict, dict]]:
    from unlock_eval.reports.runs import result_files

    runs = []
    try:
        files = result_files([path])
    except ConfigError as exc:
        raise ConfigError(f"--from {exc}") from None
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            record = (data.get("config") or {}).get(RECORD_KEY)
        except (OSError, ValueError, AttributeError) as exc:
            logger.warning("pack: skipping %s: not an lm-eval results file (%s)", file, exc)
            continue
        if isinstance(record, dict) and record.get("method") in ("unlock", "native_steering"):
            runs.append((file, data, record))
    if not runs:
        raise ConfigError(f"--from {path}: none of its results files holds a --model unlock run")
    return runs


def spec_of_record(record: dict[str, Any], cache_dir: str | None):
    """The UnlockSpec a results record was made with (its recorded arguments, resolved values included)."""
    from unlock_eval import params
    from unlock_eval.methods.unlock.spec import UnlockSpec

    names = set(params.names(UnlockSpec))
    fields = {k: v for k, v in record["hyperparameters"].items() if k in names and v is not None}
    fields.update({role: record["models"][role]["spec"] for role in ("target", "source", "source_locked")})
    fields["layers"] = None if fields.get("layers") == "all" else fields.get("layers")
    fields.pop("share_alphas", None)
    details = record.get("details") or {}
    if details.get("source_revision"):
        fields["source_revision"] = details["source_revision"]
    if cache_dir:
        fields["cache_dir"] = cache_dir
    return UnlockSpec(**{k: v for k, v in fields.items() if v is not None})


def pack_from_results(path: str, cache_dir: str | None = None) -> CapabilityPack:
    """The pack of the one --model unlock configuration under `path` (a results folder or file): its key and map
    rebuilt through the cache and checked against the checksum its record names; `applied` keeps what it steered
    with and what it scored."""
    from unlock_eval.reports.runs import task_scores

    runs = _unlock_runs(path)
    steered = [file for file, _, record in runs if (record.get("details") or {}).get("packs")]
    if steered:
        raise ConfigError(f"--from {path}: {steered[0].name} steered with capability packs (key=); use those files")
    configurations = {(r.get("details") or {}).get("steering_fingerprint"): file for file, _, r in runs}
    if len(configurations) > 1:
        names = ", ".join(sorted(file.name for file in configurations.values()))
        raise ConfigError(
            f"--from {path}: {len(configurations)} --model unlock configurations ({names}); give one results file"
        )
    file, data, record = sorted(runs, key=lambda run: run[0].name)[-1]
    details = record.get("details") or {}
    spec = spec_of_record(record, cache_dir)
    dtype = (details.get("dtypes") or {}).get("evaluation") or "auto"
    tasks: dict[str, dict[str, float]] = {}
    for _, results_data, _ in runs:  # each file read once, by _unlock_runs
        for task, (metric, value) in task_scores(results_data["results"]).items():
            tasks.setdefault(task, {})[metric] = value
    applied = {
        "alpha": spec.alpha,
        "mode": spec.mode,
        "layers": details.get("layers_resolved", "all"),
        "alpha_profile": spec.alpha_profile,
        "arithmetic": spec.arithmetic,
        "dtype": dtype,
        "results": [{"file": f.name, "sha256": sha256_of(f)} for f, _, _ in runs],
        "scores": tasks,
        "lm_eval_version": (data.get("lm_eval_version") or data.get("versions", {}).get("lm_eval")),
    }
    setup, make = _build(spec, dtype, _device({}), None, applied)
    recorded = (details.get("artifacts") or {}).get("target_key_checksum")
    rebuilt = setup.artifacts.hashes["target_key_checksum"]
    if recorded != rebuilt:
        raise ConfigError(
            f"--from {path}: the key rebuilt from the cache and data (checksum {rebuilt}) is not the one {file.name} "
            f"steered with ({recorded}); the models, data or cache changed since that run"
        )
    return make()


def control_vectors(pack: CapabilityPack, alpha: float) -> dict[int, torch.Tensor]:
    """Per target layer the fixed vector llama.cpp adds: alpha * (mean |h| of the target's states) * r/|r|."""
    vectors = {}
    for layer, vector in enumerate(pack.target_key.vectors):
        unit = unit_vector(vector)
        if unit is not None:
            vectors[layer] = (alpha * float(pack.target_norms[layer]) * unit).float()
    return vectors


def export_gguf(pack: CapabilityPack, output: Path, alpha: float | None = None) -> tuple[float, list[int]]:
    """Write `pack` as a llama.cpp control vector at `alpha` (default: the alpha its results run applied, else 0.1),
    without layer 0 (which llama.cpp cannot steer); returns the alpha used and the layers written."""
    from unlock_eval.methods.unlock.pack_gguf import model_hint, write_control_vector

    if alpha is None:
        alpha = float((pack.provenance.get("applied") or {}).get("alpha", DEFAULT_ALPHA))
    model_type = pack.provenance.get("target_model_type")
    if not model_type:
        raise ConfigError("--format gguf: the pack does not name its target's model type (config.json model_type)")
    vectors = control_vectors(pack, alpha)
    if 0 in vectors:  # llama.cpp adds direction.N to the output of block N, and has no direction.0 (pack_gguf)
        logger.warning("--format gguf: layer 0 is left out (llama.cpp cannot steer the output of its first block)")
        del vectors[0]
    write_control_vector(output, vectors, model_hint(model_type), pack.num_layers)
    return alpha, sorted(vectors)
