"""The offline demo: transfer a CoT MasterKey between the embedded models and report per-layer alignment diagnostics."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError
from .pipeline import Extractor, build_unlock
from .prompts import load_questions
from .spec import UnlockSpec


@dataclass
class DemoResult:
    rows: list[dict]
    hidden_size: int
    forward_passes: int

    @property
    def chance_cosine(self) -> float:
        """Mean |cosine| of two random directions in the target's width: sqrt(2 / (pi d))."""
        return math.sqrt(2 / (math.pi * self.hidden_size))

    @property
    def best(self) -> dict:
        return max(self.rows, key=lambda r: r["cos_transferred_vs_native"])


def run_demo(
    source: str = "smollm2-135m-instruct",
    target: str = "gemma3-270m",
    n: int = 32,
    k: int = 8,
    extract_from: str = "gsm8k",
    aggregator: str = "mean",
    capability: str = "cot",
    cache_dir: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> DemoResult:
    """Extract the source key, transfer it into the target, and compare with the target's own (native) key."""
    if source == target:
        raise ConfigError(
            f"source and target are both {source!r}: the demo compares a transferred key with the "
            "target's own, so it needs two different models"
        )
    spec = UnlockSpec(
        target=target,
        source=source,
        capability=capability,
        n=n,
        k=k,
        aggregator=aggregator,
        extract_from=extract_from,
        cache_dir=cache_dir,
        extract_batch_size=batch_size,
    )
    questions = load_questions(spec.extract_from, spec.n)
    ex = Extractor.for_spec(spec, progress=progress)
    art = build_unlock(ex, spec, questions)
    native, _ = ex.masterkey(target, target, spec.locked_template, spec.unlocked_template, questions, aggregator)
    cos = art.target_key.cosine(native)
    src_states, _ = ex.states(source, spec.locked_template, questions)
    tgt_states, _ = ex.states(target, spec.locked_template, questions)
    rows = []
    for diag, c in zip(art.subspace_map.diagnostics(src_states, tgt_states), cos.tolist()):
        rows.append({**diag, "cos_transferred_vs_native": c})
    return DemoResult(rows, native.hidden_size, ex.forward_passes)


def format_demo(result: DemoResult, source: str, target: str) -> str:
    from tabulate import tabulate

    table = tabulate(
        [
            [
                r["target_layer"],
                r["source_layer"],
                r["fit_r2"],
                r["source_energy_k"],
                r["target_energy_k"],
                r["cos_transferred_vs_native"],
            ]
            for r in result.rows
        ],
        headers=["target layer", "source layer", "fit R²", "src energy@k", "tgt energy@k", "cos(transferred, native)"],
        floatfmt=".3f",
    )
    best = result.best
    return (
        f"{source} -> {target}: transferred CoT key vs the target's own key, per target layer\n{table}\n"
        f"best layer {best['target_layer']}: cosine {best['cos_transferred_vs_native']:.3f} "
        f"(random directions in d={result.hidden_size}: mean |cos| ~ {result.chance_cosine:.3f}); "
        f"extraction forward passes this run: {result.forward_passes}"
    )
