"""`unlock-eval diagnose`: the per-layer diagnostics of a source/target pair (unlock_eval.methods.unlock.diagnostics)
from captured states (cached: a warm cache runs no forward pass), with k and n sweeps, as a table, JSON and a plot."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from unlock_eval.cache import fingerprint
from unlock_eval.data.prompts import load_questions
from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.align import SubspaceMap, resolve_layer_map
from unlock_eval.methods.unlock.bases import Bases
from unlock_eval.methods.unlock.diagnostics import (
    DEFAULT_FOLDS,
    LayerDiagnostics,
    bootstrap_cosines,
    chance_cosine,
    heldout_r2,
    linear_cka,
    verdict,
)
from unlock_eval.methods.unlock.extractor import Extractor
from unlock_eval.methods.unlock.spec import UnlockSpec


@dataclass
class PairStates:
    """The captured states a diagnosis needs, `[L, n, d]`: source locked/unlocked (the key), target locked (the map)
    and target unlocked (the native key; None for two checkpoints)."""

    source_locked: torch.Tensor
    source_unlocked: torch.Tensor
    target_locked: torch.Tensor
    target_unlocked: torch.Tensor | None

    def last(self, n: int) -> PairStates:
        """The states of the last n prompts (the reference's last-n rule: a smaller n is a suffix of a larger one)."""
        cut = [None if t is None else t[:, -n:] for t in vars(self).values()]
        return PairStates(*cut)


def capture_pair(
    extractor: Extractor, spec: UnlockSpec, questions: list[str], native: bool = True
) -> tuple[PairStates, list[str]]:
    """States of `spec`'s models through the extractor's cache (captured only when missing), and their cache keys."""
    roles = [(spec.source_locked, spec.locked_template), (spec.source, spec.unlocked_template),
             (spec.target, spec.locked_template)]  # fmt: skip
    if native and not spec.model_induced:
        roles.append((spec.target, spec.unlocked_template))
    loaded = [extractor.states(model, template, questions) for model, template in roles]
    tensors = [states for states, _ in loaded] + [None] * (4 - len(loaded))
    return PairStates(*tensors), [key for _, key in loaded]


def diagnose_states(
    pair: PairStates,
    k: int,
    aggregator: str = "mean",
    layer_map=None,
    folds: int = DEFAULT_FOLDS,
    bases: tuple[Bases, Bases] | None = None,
) -> list[LayerDiagnostics]:
    """One row per target layer (see LayerDiagnostics); `bases` (source, target) decomposed for a k' >= k."""
    center = aggregator == "pca"
    src, tgt = pair.source_locked, pair.target_locked
    smap = SubspaceMap.fit(src, tgt, k=k, center=center, layer_map=layer_map, **_bases_kwargs(bases))
    key = _key(pair.source_locked, pair.source_unlocked, aggregator)
    transferred = smap.transfer(key).vectors.double()
    native = _key(tgt, pair.target_unlocked, aggregator).vectors.double() if pair.target_unlocked is not None else None
    cos = (None, None, None)
    if pair.target_unlocked is not None:
        cos = bootstrap_cosines(smap.transfer, (src, pair.source_unlocked), (tgt, pair.target_unlocked), aggregator)
    rows = []
    L_t = tgt.shape[0]
    folds = min(folds, src.shape[1])
    for t, s in enumerate(smap.layer_map):
        r2_k, r2_full, _ = heldout_r2(src[s], tgt[t], k, center, folds)
        cka, cka_chance = linear_cka(src[s], tgt[t])
        h_norm = float(tgt[t].double().norm(dim=-1).mean())
        rows.append(
            LayerDiagnostics(
                target_layer=t,
                source_layer=s,
                relative_depth=t / max(L_t - 1, 1),
                heldout_r2_k=r2_k,
                heldout_r2_full=r2_full,
                cka=cka,
                cka_chance=cka_chance,
                key_norm_ratio=float(transferred[t].norm()) / h_norm,
                native_norm_ratio=None if native is None else float(native[t].norm()) / h_norm,
                cos=None if cos[0] is None else cos[0][t],
                cos_low=None if cos[1] is None else cos[1][t],
                cos_high=None if cos[2] is None else cos[2][t],
            )
        )
    return rows


DIAGNOSTICS_VERSION = 1


def cached_diagnostics(
    extractor: Extractor, spec: UnlockSpec, questions: list[str], native: bool, folds: int = DEFAULT_FOLDS
) -> list[LayerDiagnostics]:
    """`diagnose_states` of `spec` at its n and k through the artifact cache (`diagnostics/`): what the `unlock` adapter
    records and what `layers=aligned` reads. With `native`, the target's unlocked states are captured if missing."""
    from dataclasses import fields

    pair, state_keys = capture_pair(extractor, spec, questions, native=native)
    parts = {"states": state_keys, "k": spec.k, "aggregator": spec.aggregator, "folds": folds,
             "layer_map": spec.layer_map, "version": DIAGNOSTICS_VERSION}  # fmt: skip
    names = [f.name for f in fields(LayerDiagnostics)]

    def build():
        rows = diagnose_states(pair, spec.k, spec.aggregator, spec.layer_map, min(folds, len(questions)))
        table = torch.tensor([[float("nan") if v is None else float(v) for v in map(vars(r).get, names)] for r in rows])
        return {"rows": table}, {"artifact": "diagnostics", "columns": names, **parts}

    tensors, meta = extractor.cache.get_or_build("diagnostics", fingerprint(parts), build)
    rows = []
    for values in tensors["rows"].tolist():
        row = {name: (None if value != value else value) for name, value in zip(meta["columns"], values)}
        row["target_layer"], row["source_layer"] = int(row["target_layer"]), int(row["source_layer"])
        rows.append(LayerDiagnostics(**row))
    return rows


def _key(locked: torch.Tensor, unlocked: torch.Tensor, aggregator: str):
    from unlock_eval.methods.unlock.masterkey import MasterKey

    return MasterKey.from_states(locked, unlocked, aggregator=aggregator)


def _bases_kwargs(bases):
    return {} if bases is None else {"source_bases": bases[0], "target_bases": bases[1]}


@dataclass
class Diagnosis:
    """The main table (n, k), the k and n sweeps (summaries per layer), and what was run."""

    source: str
    target: str
    n: int
    k: int
    folds: int
    hidden_size: int
    rows: list[LayerDiagnostics]
    sweep_k: dict[int, list[LayerDiagnostics]] = field(default_factory=dict)
    sweep_n: dict[int, list[LayerDiagnostics]] = field(default_factory=dict)
    forward_passes: int = 0

    @property
    def verdict(self) -> str:
        return verdict(self.rows)

    def to_json(self) -> dict:
        def rows(values):
            return [r.as_dict() for r in values]

        return {
            "source": self.source,
            "target": self.target,
            "n": self.n,
            "k": self.k,
            "folds": self.folds,
            "chance_cosine": chance_cosine(self.hidden_size),
            "layers": rows(self.rows),
            "verdict": self.verdict,
            "sweep_k": {str(k): rows(v) for k, v in self.sweep_k.items()},
            "sweep_n": {str(n): rows(v) for n, v in self.sweep_n.items()},
            "extraction_forward_passes": self.forward_passes,
        }


def run_diagnosis(
    spec: UnlockSpec, folds: int = DEFAULT_FOLDS, sweep_k=(), sweep_n=(), progress: bool = True
) -> Diagnosis:
    """Capture (or read) the states for the largest n asked for, then diagnose (n, k) and the sweeps from them."""
    if spec.source == spec.target and spec.source_locked == spec.target:
        raise ConfigError(
            "diagnose compares a transferred key with the target's own: give a source other than the target"
        )
    n_max = max([spec.n, *sweep_n])
    centred = spec.aggregator == "pca"
    for flag, k, n in [*(("--sweep-k", k, spec.n) for k in sweep_k), *(("--sweep-n", spec.k, n) for n in sweep_n)]:
        if k > n - centred:
            raise ConfigError(f"{flag}: k={k} does not fit n={n} (k <= n, k <= n - 1 with pca)")
    questions = load_questions(spec.extract_from, n_max)
    extractor = Extractor.for_spec(spec, progress=progress)
    pair, _ = capture_pair(extractor, spec, questions)
    layer_map = spec.layer_map

    def at(n: int, k: int, bases=None):
        return diagnose_states(pair.last(n), k, spec.aggregator, layer_map, min(folds, n), bases)

    sweep_k_rows = {}
    if sweep_k:
        sub = pair.last(spec.n)
        mapping, _ = resolve_layer_map(layer_map, sub.source_locked.shape[0], sub.target_locked.shape[0])
        k_max = max(sweep_k)
        bases = (
            Bases.compute(sub.source_locked, k_max, centred, mapping),
            Bases.compute(sub.target_locked, k_max, centred),
        )  # one decomposition for the whole k sweep
        sweep_k_rows = {k: at(spec.n, k, bases) for k in sorted(sweep_k)}
    sweep_n_rows = {n: at(n, spec.k) for n in sorted(sweep_n)}
    return Diagnosis(
        source=spec.source,
        target=spec.target,
        n=spec.n,
        k=spec.k,
        folds=min(folds, spec.n),
        hidden_size=pair.target_locked.shape[-1],
        rows=at(spec.n, spec.k),
        sweep_k=sweep_k_rows,
        sweep_n=sweep_n_rows,
        forward_passes=extractor.forward_passes,
    )


def format_diagnosis(d: Diagnosis) -> str:
    from tabulate import tabulate

    def num(value, digits=3):
        return "" if value is None else f"{value:+.{digits}f}" if digits == 3 else f"{value:.{digits}f}"

    table = [
        [
            r.target_layer,
            r.source_layer,
            f"{r.relative_depth:.2f}",
            num(r.heldout_r2_k),
            num(r.heldout_r2_full),
            f"{r.cka:.3f} ({r.cka_chance:.3f})",
            "" if r.cos is None else f"{r.cos:+.3f} [{r.cos_low:+.3f}, {r.cos_high:+.3f}]",
            r.sign,
            f"{r.key_norm_ratio:.3f}" + ("" if r.native_norm_ratio is None else f" / {r.native_norm_ratio:.3f}"),
            "yes" if r.aligned else "",
        ]
        for r in d.rows
    ]
    headers = ["target layer", "source layer", "depth", f"held-out R² (k={d.k})", "held-out R² (full)",
               "CKA (chance)", "cos(transferred, native) [95%]", "sign", "|key|/|h| (native)", "aligned"]  # fmt: skip
    text = [
        f"{d.source} -> {d.target}: n={d.n} prompts, k={d.k}, {d.folds}-fold held-out R² (0 = predicting the "
        f"training mean), CKA against shuffled pairs, cosine chance level (random directions, d={d.hidden_size}): "
        f"{chance_cosine(d.hidden_size):.3f}",
        tabulate(table, headers=headers, disable_numparse=True),
        f"verdict: {d.verdict}",
    ]
    for name, sweep in (("k", d.sweep_k), ("n", d.sweep_n)):
        if sweep:
            values = list(sweep)
            rows = [
                [layer, *(f"{sweep[v][layer].heldout_r2_k:+.2f} / {_cos(sweep[v][layer])}" for v in values)]
                for layer in range(len(d.rows))
            ]
            text.append(f"sweep over {name}: held-out R² (k coords) / cosine, per target layer")
            text.append(
                tabulate(rows, headers=["target layer", *(f"{name}={v}" for v in values)], disable_numparse=True)
            )
    text.append(f"extraction forward passes this run: {d.forward_passes}")
    return "\n".join(text)


def _cos(row: LayerDiagnostics) -> str:
    return "n/a" if row.cos is None else f"{row.cos:+.2f}"


def plot_diagnosis(d: Diagnosis, path: str) -> None:
    """Write diagnosis_figure to a PNG or SVG file."""
    fig = diagnosis_figure(d)  # selects the headless backend before pyplot is imported here
    import matplotlib.pyplot as plt

    fig.savefig(path, metadata={"Software": None} if str(path).endswith(".png") else {"Date": None})
    plt.close(fig)


def diagnosis_figure(d: Diagnosis):
    """Held-out R², CKA and the cosine (with its interval and chance band) against relative depth (a matplotlib
    figure; the caller saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depth = [r.relative_depth for r in d.rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    top.plot(depth, [r.heldout_r2_k for r in d.rows], marker="o", label=f"held-out R², k={d.k} coordinates")
    top.plot(depth, [r.heldout_r2_full for r in d.rows], marker=".", label="held-out R², full states")
    top.plot(depth, [r.cka for r in d.rows], marker="s", label="CKA")
    top.plot(depth, [r.cka_chance for r in d.rows], linestyle=":", color="grey", label="CKA, shuffled pairs")
    for k, rows in d.sweep_k.items():
        if k != d.k:
            top.plot(depth, [r.heldout_r2_k for r in rows], alpha=0.5, linewidth=1, label=f"held-out R², k={k}")
    top.axhline(0, color="black", linewidth=0.5)
    top.set_ylabel("R² / CKA")
    top.legend(fontsize="x-small")
    if d.rows[0].cos is not None:
        cos = [r.cos for r in d.rows]
        bottom.plot(depth, cos, marker="o", label="cos(transferred, native)")
        bottom.fill_between(
            depth, [r.cos_low for r in d.rows], [r.cos_high for r in d.rows], alpha=0.25, label="95% bootstrap"
        )
        chance = chance_cosine(d.hidden_size)
        bottom.axhspan(-chance, chance, color="grey", alpha=0.2, label="chance |cos| (random directions)")
    bottom.plot(depth, [r.key_norm_ratio for r in d.rows], linestyle="--", label="|transferred key| / |h|")
    bottom.axhline(0, color="black", linewidth=0.5)
    bottom.set_xlabel("relative depth of the target layer")
    bottom.set_ylabel("cosine / norm ratio")
    bottom.legend(fontsize="x-small")
    fig.suptitle(f"{d.source} → {d.target} (n={d.n}, k={d.k})")
    fig.tight_layout()
    return fig


def to_json_text(d: Diagnosis) -> str:
    return json.dumps(d.to_json(), indent=2)
