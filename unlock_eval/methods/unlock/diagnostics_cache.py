"""The diagnostics rows of a run in the artifact cache (`diagnostics/`): one float table per pair, None as NaN."""

from __future__ import annotations

from dataclasses import fields

import torch

from unlock_eval.cache import fingerprint
from unlock_eval.methods.unlock.artifact_keys import diagnostics_parts
from unlock_eval.methods.unlock.diagnostics import DEFAULT_FOLDS, LayerDiagnostics, capture_pair, diagnose_states
from unlock_eval.methods.unlock.extractor import Extractor
from unlock_eval.methods.unlock.spec import UnlockSpec


def cached_diagnostics(
    extractor: Extractor, spec: UnlockSpec, questions: list[str], native: bool, folds: int = DEFAULT_FOLDS
) -> list[LayerDiagnostics]:
    """`diagnose_states` of `spec` at its n and k through the artifact cache (`diagnostics/`): what the `unlock` adapter
    records and what `layers=aligned` reads. With `native`, the target's unlocked states are captured if missing."""
    pair, state_keys = capture_pair(extractor, spec, questions, native=native)
    parts = diagnostics_parts(state_keys, spec.k, spec.aggregator, folds, spec.layer_map)

    def build():
        rows = diagnose_states(pair, spec.k, spec.aggregator, spec.layer_map, min(folds, len(questions)))
        table, columns = encode(rows)
        return {"rows": table}, {"artifact": "diagnostics", "columns": columns, **parts}

    tensors, meta = extractor.cache.get_or_build("diagnostics", fingerprint(parts), build)
    return decode(tensors["rows"], meta["columns"])


def encode(rows: list[LayerDiagnostics]) -> tuple[torch.Tensor, list[str]]:
    """Rows as a float table `[layers, fields]` (a missing value as NaN) and the column names."""
    names = [f.name for f in fields(LayerDiagnostics)]
    table = torch.tensor([[float("nan") if v is None else float(v) for v in map(vars(r).get, names)] for r in rows])
    return table, names


def decode(table: torch.Tensor, columns: list[str]) -> list[LayerDiagnostics]:
    """Inverse of `encode`."""
    rows = []
    for values in table.tolist():
        row = {name: (None if value != value else value) for name, value in zip(columns, values)}
        row["target_layer"], row["source_layer"] = int(row["target_layer"]), int(row["source_layer"])
        rows.append(LayerDiagnostics(**row))
    return rows
