"""The statistics behind the transfer diagnostics, each out of sample or with its chance level: held-out R² of a
subspace map (k-fold), linear CKA against shuffled pairs, bootstrap cosines of two keys, the random-direction cosine."""

from __future__ import annotations

import math

import torch

from unlock_eval.methods.unlock.bases import top_right_singular
from unlock_eval.methods.unlock.masterkey import MasterKey

BOOTSTRAP = 200
CKA_SHUFFLES = 20


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
