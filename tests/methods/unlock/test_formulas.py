"""Parity of MasterKey, layer map and SubspaceMap with straightforward NumPy reimplementations (fp32, 1e-5)."""

import numpy as np
import pytest
import torch

from unlock_eval import MasterKey, SubspaceMap, relative_depth_layer_map
from unlock_eval.errors import ConfigError

from test_bases import svd_transfer


def rand_states(L, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(L, n, d, generator=g) * 3 + torch.randn(1, 1, d, generator=g)


def test_mean_key_matches_naive_loop():
    locked, unlocked = rand_states(3, 7, 5, 0), rand_states(3, 7, 5, 1)
    key = MasterKey.from_states(locked, unlocked, aggregator="mean")
    for l in range(3):
        expected = sum(unlocked[l, i].numpy() - locked[l, i].numpy() for i in range(7)) / 7
        np.testing.assert_allclose(key.vectors[l].numpy(), expected, atol=1e-5)


def test_pca_key_matches_numpy_svd_with_sign_toward_mean():
    locked, unlocked = rand_states(4, 9, 6, 2), rand_states(4, 9, 6, 3)
    key = MasterKey.from_states(locked, unlocked, aggregator="pca")
    for l in range(4):
        D = (unlocked[l] - locked[l]).double().numpy()
        _, _, vt = np.linalg.svd(D - D.mean(0), full_matrices=False)
        v = vt[0] if vt[0] @ D.mean(0) >= 0 else -vt[0]
        np.testing.assert_allclose(key.vectors[l].numpy(), v, atol=1e-5)
        assert float(key.vectors[l].double() @ torch.from_numpy(D.mean(0))) >= 0
    assert "pca_sign" in key.metadata


def test_pca_needs_two_prompts():
    with pytest.raises(ConfigError, match="n >= 2"):
        MasterKey.from_states(torch.zeros(1, 1, 3), torch.ones(1, 1, 3), aggregator="pca")


# s(t) = floor((L_s - 1) t / (L_t - 1)), worked out by hand (e.g. 30 -> 18, t = 2: floor(29 * 2 / 17) = floor(3.41) = 3)
HAND_LAYER_MAPS = {
    (30, 18): [0, 1, 3, 5, 6, 8, 10, 11, 13, 15, 17, 18, 20, 22, 23, 25, 27, 29],
    (18, 30): [0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 7, 7, 8, 8, 9, 9, 10, 11, 11, 12, 12, 13, 14, 14, 15, 15, 16, 17],
    (4, 4): [0, 1, 2, 3],
    (3, 5): [0, 0, 1, 1, 2],
    (1, 5): [0, 0, 0, 0, 0],
    (5, 1): [4],
}


@pytest.mark.parametrize("Ls,Lt", list(HAND_LAYER_MAPS))
def test_relative_depth_layer_map_matches_hand_computed_tables(Ls, Lt):
    assert relative_depth_layer_map(Ls, Lt) == HAND_LAYER_MAPS[(Ls, Lt)]


@pytest.mark.parametrize("center", [False, True])
def test_subspace_map_matches_numpy(center):
    Ls, Lt, n, ds, dt, k = 5, 3, 12, 10, 7, 4
    src, tgt = rand_states(Ls, n, ds, 4), rand_states(Lt, n, dt, 5)
    smap = SubspaceMap.fit(src, tgt, k=k, center=center)
    key = MasterKey(torch.randn(Ls, ds))
    out = smap.transfer(key)
    assert out.vectors.shape == (Lt, dt)
    np.testing.assert_allclose(
        out.vectors.numpy(), svd_transfer(src, tgt, key.vectors, k, center), atol=1e-5, rtol=1e-5
    )
    assert smap.layer_map == relative_depth_layer_map(Ls, Lt)
    # factored storage: k(d_s + d_t) + k^2 numbers per target layer, no dense map
    assert smap.Vs.shape == (Lt, k, ds) and smap.M.shape == (Lt, k, k) and smap.Vt.shape == (Lt, k, dt)


def test_subspace_map_recovers_an_exact_linear_relation():
    g = torch.Generator().manual_seed(7)
    Hs = torch.randn(1, 20, 6, generator=g)
    A = torch.randn(6, 6, generator=g)
    Ht = Hs @ A  # target = linear function of source, full rank: k = d recovers it exactly
    smap = SubspaceMap.fit(Hs, Ht, k=6)
    v = torch.randn(1, 6, generator=g)
    out = smap.transfer(MasterKey(v)).vectors
    torch.testing.assert_close(out, v @ A, atol=1e-4, rtol=1e-4)
    assert smap.diagnostics(Hs, Ht)[0]["fit_r2"] > 0.9999


def test_explicit_layer_map_and_errors():
    src, tgt = rand_states(3, 8, 5, 8), rand_states(2, 8, 4, 9)
    smap = SubspaceMap.fit(src, tgt, k=2, layer_map=[2, 1])
    assert smap.layer_map == [2, 1]
    with pytest.raises(ConfigError, match="explicit layer_map must list 2 source layers"):
        SubspaceMap.fit(src, tgt, k=2, layer_map=[0, 5])
    with pytest.raises(ConfigError, match="allowed names are relative_depth"):
        SubspaceMap.fit(src, tgt, k=2, layer_map="nearest")
    with pytest.raises(ConfigError, match=r"k=9 exceeds the number of prompts n=8"):
        SubspaceMap.fit(src, tgt, k=9)
    with pytest.raises(ConfigError, match=r"k=5 exceeds the hidden size"):
        SubspaceMap.fit(rand_states(3, 30, 5, 1), rand_states(2, 30, 4, 2), k=5)
    with pytest.raises(ConfigError, match="must be paired"):
        SubspaceMap.fit(src, rand_states(2, 9, 4, 9), k=2)
    with pytest.raises(ConfigError, match=r"does not fit this map"):
        smap.transfer(MasterKey(torch.ones(3, 7)))


def test_key_arithmetic_and_cosine():
    a, b = MasterKey(torch.randn(2, 4)), MasterKey(torch.randn(2, 4))
    torch.testing.assert_close((2 * a - b).vectors, 2 * a.vectors - b.vectors)
    torch.testing.assert_close((-a).vectors, -a.vectors)
    torch.testing.assert_close(a.cosine(a), torch.ones(2))
    with pytest.raises(ConfigError, match="shapes"):
        a + MasterKey(torch.randn(3, 4))
    with pytest.raises(ConfigError, match="aggregator='median'"):
        MasterKey.from_states(torch.zeros(1, 2, 3), torch.ones(1, 2, 3), aggregator="median")
    with pytest.raises(ConfigError, match="NaN"):
        MasterKey(torch.tensor([[float("nan")]]))
