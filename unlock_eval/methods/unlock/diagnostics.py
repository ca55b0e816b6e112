"""Will a transfer work? The per-layer diagnostics of a source/target pair from captured states (`diagnose_states`),
the one line that restates them (`verdict`), and a run with k and n sweeps (`run_diagnosis`).

Every number is out of sample or comes with its chance level (the statistics: `measures`): the in-sample fit R² of
`SubspaceMap.diagnostics` reads near 1 whenever k is near n, so it says little about a pair. `ALIGNED_R2` and the sign
rule define `layers=aligned` (`LayerDiagnostics.aligned`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from unlock_eval.data.prompts import load_questions
from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.align import SubspaceMap, check_rank, resolve_layer_map
from unlock_eval.methods.unlock.bases import Bases
from unlock_eval.methods.unlock.extractor import Extractor
from unlock_eval.methods.unlock.masterkey import MasterKey, centers
from unlock_eval.methods.unlock.measures import bootstrap_cosines, chance_cosine, heldout_r2, linear_cka
from unlock_eval.methods.unlock.spec import UnlockSpec

ALIGNED_R2 = 0.0  # layers=aligned needs a held-out R² (k coordinates) above this: better than the training mean
DEFAULT_FOLDS = 5


@dataclass
class LayerDiagnostics:
    """One target layer. `cos_*` are None when the target's own key is not at hand (model-induced capabilities)."""

    target_layer: int
    source_layer: int
    relative_depth: float
    heldout_r2_k: float  # R² of the predicted target coordinates in the target's top-k basis, held-out prompts
    heldout_r2_full: float  # the same, of the predicted full d_t states
    cka: float  # linear CKA of the paired (source, target) states
    cka_chance: float  # mean CKA with the pairing shuffled
    key_norm_ratio: float  # |transferred key| / mean |h| of the target's states
    native_norm_ratio: float | None = None  # |target's own key| / mean |h|
    cos: float | None = None  # cosine(transferred key, target's own key), all prompts
    cos_low: float | None = None  # 95% bootstrap interval over prompts
    cos_high: float | None = None

    @property
    def sign(self) -> str:
        """ "agrees" / "opposes" when the interval excludes 0, else "unclear" ("n/a" without a native key)."""
        if self.cos_low is None:
            return "n/a"
        return "agrees" if self.cos_low > 0 else "opposes" if self.cos_high < 0 else "unclear"

    @property
    def aligned(self) -> bool:
        """The `layers=aligned` rule: held-out R² > ALIGNED_R2 (the map predicts held-out target states better than
        their training mean) and, when the target's own key exists, a cosine interval above 0."""
        return self.heldout_r2_k > ALIGNED_R2 and self.sign in ("agrees", "n/a")

    def as_dict(self) -> dict:
        return {**asdict(self), "sign": self.sign, "aligned": self.aligned}


def layer_ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0–2, 5, 7–8"."""
    parts, start = [], None
    for i, layer in enumerate(layers):
        if start is None:
            start = layer
        if i + 1 == len(layers) or layers[i + 1] != layer + 1:
            parts.append(str(start) if start == layer else f"{start}–{layer}")
            start = None
    return ", ".join(parts)


def verdict(rows: list[LayerDiagnostics], model_induced: bool = True) -> str:
    """One line that restates the numbers: where the transferred key agrees or opposes, and where the map predicts.
    Without signs, `model_induced` says why: two checkpoints have no native key; a prompt-induced run that did not
    capture the target's own key has one, unchecked (layers=aligned captures it and also checks the signs)."""
    parts = []
    signs = any(r.sign != "n/a" for r in rows)
    if signs:
        for sign, word in (("agrees", "agrees with"), ("opposes", "opposes")):
            layers = [r.target_layer for r in rows if r.sign == sign]
            parts.append(f"{word} the native key in layers {layer_ranges(layers)}" if layers else f"{word} it nowhere")
        text = "transferred key " + ", ".join(parts)
    elif model_induced:
        text = "no native key (model-induced): signs not checked"
    else:
        text = "the target's own key was not captured in this run: signs not checked"
    good = [r.target_layer for r in rows if r.heldout_r2_k > ALIGNED_R2]
    text += f"; held-out R² > {ALIGNED_R2:g} in layers {layer_ranges(good) or 'none'}"
    aligned = layer_ranges([r.target_layer for r in rows if r.aligned]) or "no layer"
    if not signs and not model_induced:  # layers=aligned would capture the native key and drop the opposing layers
        return text + f"; layers=aligned would check the signs first, then steer at most {aligned}"
    return text + f"; layers=aligned would steer {aligned}"


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
    """States of `spec`'s models through the extractor's cache (captured only when missing), and their cache keys. All
    four are captured in the map's dtype (align_dtype), so the diagnosed key compares like with like."""
    roles = [(spec.source_locked, spec.locked_template), (spec.source, spec.unlocked_template),
             (spec.target, spec.locked_template)]  # fmt: skip
    if native and not spec.model_induced:
        roles.append((spec.target, spec.unlocked_template))
    loaded = [extractor.states(model, template, questions, spec.align_dtype) for model, template in roles]
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
    center = centers(aggregator)
    src, tgt = pair.source_locked, pair.target_locked
    given = {} if bases is None else {"source_bases": bases[0], "target_bases": bases[1]}
    smap = SubspaceMap.fit(src, tgt, k=k, center=center, layer_map=layer_map, **given)
    key = MasterKey.from_states(src, pair.source_unlocked, aggregator=aggregator)
    transferred = smap.transfer(key).vectors.double()
    native = cos = None
    if pair.target_unlocked is not None:
        native = MasterKey.from_states(tgt, pair.target_unlocked, aggregator=aggregator).vectors.double()
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
                cos=None if cos is None else cos[0][t],
                cos_low=None if cos is None else cos[1][t],
                cos_high=None if cos is None else cos[2][t],
            )
        )
    return rows


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
    pca_sign_flipped_layers: list[int] | None = None  # aggregator=pca: source layers where the SVD's sign is flipped
    source_num_layers: int = 0
    model_induced: bool = False

    @property
    def verdict(self) -> str:
        return verdict(self.rows, self.model_induced)

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
            "pca_sign_flipped_layers": self.pca_sign_flipped_layers,
        }


def run_diagnosis(
    spec: UnlockSpec, folds: int = DEFAULT_FOLDS, sweep_k=(), sweep_n=(), progress: bool = True
) -> Diagnosis:
    """Capture (or read) the states for the largest n asked for, then diagnose (n, k) and the sweeps from them."""
    if spec.source == spec.target and spec.source_locked == spec.target:
        raise ConfigError(
            "diagnose compares a transferred key with the target's own: give a source other than the target"
        )
    center = centers(spec.aggregator)
    for flag, k, n in [*(("--sweep-k", k, spec.n) for k in sweep_k), *(("--sweep-n", spec.k, n) for n in sweep_n)]:
        try:
            check_rank(k, n, center)
        except ConfigError as e:
            raise ConfigError(f"{flag}: {e}") from None
    questions = load_questions(spec.extract_from, max([spec.n, *sweep_n]))
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
            Bases.compute(sub.source_locked, k_max, center, mapping),
            Bases.compute(sub.target_locked, k_max, center),
        )  # one decomposition for the whole k sweep
        sweep_k_rows = {k: at(spec.n, k, bases) for k in sorted(sweep_k)}
    sweep_n_rows = {n: at(n, spec.k) for n in sorted(sweep_n)}
    flipped = None
    if spec.aggregator == "pca":  # where pca_sign=raw (the reference) and pca_sign=mean (ours) steer opposite ways
        sub = pair.last(spec.n)
        key = MasterKey.from_states(sub.source_locked, sub.source_unlocked, aggregator="pca")
        flipped = key.metadata["pca_sign_flipped_layers"]
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
        pca_sign_flipped_layers=flipped,
        source_num_layers=pair.source_locked.shape[0],
        model_induced=spec.model_induced,
    )
