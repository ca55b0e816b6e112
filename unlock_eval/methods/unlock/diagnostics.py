"""Will a transfer work? Per target layer, from captured states: held-out R² of the subspace map (k-fold), linear CKA
of the paired states against a shuffled-pairing chance level, the cosine between the transferred and the target's
own key with a bootstrap interval over prompts, and the keys' norms relative to the hidden states.

Every number is out of sample or comes with its chance level: the in-sample fit R² of `SubspaceMap.diagnostics` reads
near 1 whenever k is near n, so it says little about a pair. `ALIGNED_R2` and the sign rule define `layers=aligned`
(`LayerDiagnostics.aligned`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from unlock_eval.methods.unlock.bases import top_right_singular
from unlock_eval.methods.unlock.masterkey import MasterKey

ALIGNED_R2 = 0.0  # layers=aligned needs a held-out R² (k coordinates) above this: better than the training mean
DEFAULT_FOLDS = 5
BOOTSTRAP = 200
CKA_SHUFFLES = 20


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


def _center(train: torch.Tensor, *others: torch.Tensor):
    mean = train.mean(0, keepdim=True)
    return (train - mean, *(o - mean for o in others), mean)


def heldout_r2(Hs: torch.Tensor, Ht: torch.Tensor, k: int, center: bool, folds: int) -> tuple[float, float, int]:
    """k-fold held-out R² of the map `Hs -> Ht` (bases and M refit on the training folds only), pooled over folds,
    against predicting the training mean: (in the target's k coordinates, in full d_t, the k used)."""
    Hs, Ht = Hs.double(), Ht.double()
    n = Hs.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    chunks = [order[i::folds] for i in range(folds)]
    k_used = min(k, n - max(len(c) for c in chunks) - int(center), Hs.shape[1], Ht.shape[1])
    res_k = tot_k = res_full = tot_full = 0.0
    for test in chunks:
        train = torch.ones(n, dtype=torch.bool)
        train[test] = False
        s_tr, s_te, t_tr, t_te = Hs[train], Hs[test], Ht[train], Ht[test]
        mean_t = torch.zeros(1, Ht.shape[1], dtype=torch.float64)
        if center:
            s_tr, s_te, _ = _center(s_tr, s_te)
            t_tr, t_te, mean_t = _center(t_tr, t_te)
        Vs, _ = top_right_singular(s_tr, k_used)
        Vt, _ = top_right_singular(t_tr, k_used)
        M = torch.linalg.pinv(s_tr @ Vs.T) @ (t_tr @ Vt.T)
        pred = (s_te @ Vs.T) @ M
        coords, coords_mean = t_te @ Vt.T, (t_tr @ Vt.T).mean(0, keepdim=True)
        res_k += float(((pred - coords) ** 2).sum())
        tot_k += float(((coords - coords_mean) ** 2).sum())
        full_pred, full_true = pred @ Vt + mean_t, t_te + mean_t
        train_mean = (t_tr + mean_t).mean(0, keepdim=True)
        res_full += float(((full_pred - full_true) ** 2).sum())
        tot_full += float(((full_true - train_mean) ** 2).sum())
    return 1 - res_k / max(tot_k, 1e-30), 1 - res_full / max(tot_full, 1e-30), k_used


def _centered_gram(X: torch.Tensor) -> torch.Tensor:
    X = X.double() - X.double().mean(0)
    return X @ X.T


def linear_cka(X: torch.Tensor, Y: torch.Tensor, shuffles: int = CKA_SHUFFLES) -> tuple[float, float]:
    """Linear CKA of paired rows (Kornblith et al. 2019), through the n x n Gram matrices, and its chance level: the
    mean CKA with the pairing shuffled (rows of Y permuted), `shuffles` times."""
    Kx, Ky = _centered_gram(X), _centered_gram(Y)
    scale = (Kx.norm() * Ky.norm()).clamp_min(1e-30)
    g = torch.Generator().manual_seed(1)
    chance = 0.0
    for _ in range(shuffles):
        p = torch.randperm(Ky.shape[0], generator=g)
        chance += float((Kx * Ky[p][:, p]).sum() / scale) / shuffles
    return float((Kx * Ky).sum() / scale), chance


def chance_cosine(d: int) -> float:
    """Mean |cosine| of two random directions in d dimensions: sqrt(2 / (pi d))."""
    return math.sqrt(2 / (math.pi * d))


def bootstrap_cosines(transfer, source_pair, native_pair, aggregator: str, resamples: int = BOOTSTRAP):
    """Per target layer: cosine(transfer(source key), native key) on all prompts and its 95% percentile interval
    over prompts resampled with replacement (both keys from the same resample; the map stays fixed).
    `source_pair`/`native_pair`: (locked, unlocked) states `[L, n, d]`."""

    def cosines(idx):
        src = MasterKey.from_states(source_pair[0][:, idx], source_pair[1][:, idx], aggregator=aggregator)
        nat = MasterKey.from_states(native_pair[0][:, idx], native_pair[1][:, idx], aggregator=aggregator)
        return transfer(src).cosine(nat).double()

    n = source_pair[0].shape[1]
    full = cosines(torch.arange(n))
    g = torch.Generator().manual_seed(2)
    draws = torch.stack([cosines(torch.randint(n, (n,), generator=g)) for _ in range(resamples)])
    low, high = torch.nanquantile(draws, 0.025, dim=0), torch.nanquantile(draws, 0.975, dim=0)
    return full.tolist(), low.tolist(), high.tolist()


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


def verdict(rows: list[LayerDiagnostics]) -> str:
    """One line that restates the numbers: where the transferred key agrees or opposes, and where the map predicts."""
    parts = []
    if any(r.sign != "n/a" for r in rows):
        for sign, word in (("agrees", "agrees with"), ("opposes", "opposes")):
            layers = [r.target_layer for r in rows if r.sign == sign]
            parts.append(f"{word} the native key in layers {layer_ranges(layers)}" if layers else f"{word} it nowhere")
        text = "transferred key " + ", ".join(parts)
    else:
        text = "no native key (model-induced): signs not checked"
    good = [r.target_layer for r in rows if r.heldout_r2_k > ALIGNED_R2]
    text += f"; held-out R² > {ALIGNED_R2:g} in layers {layer_ranges(good) or 'none'}"
    aligned = [r.target_layer for r in rows if r.aligned]
    return text + f"; layers=aligned would steer {layer_ranges(aligned) or 'no layer'}"
