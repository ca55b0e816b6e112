"""Subspace bases: the Gram/covariance decomposition gives the full SVD's transfer (1e-5), bases decomposed once for
the largest k serve every smaller k, and the pipeline caches them so a k grid decomposes each layer once."""

import numpy as np
import pytest
import torch

from unlock_eval import MasterKey, SubspaceMap, relative_depth_layer_map
from unlock_eval.cache import ArtifactCache, load_artifact
from unlock_eval.cache_admin import list_entries
from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.bases import Bases, top_right_singular
from unlock_eval.methods.unlock.extractor import Extractor

from adapter_fixtures import QUESTIONS
from tiny_models import char_tokenizer, tiny_model


def rand_states(L, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    # decaying spectrum, like real hidden states: clear gaps between the top directions
    scales = torch.logspace(1, -1, d).double()
    return (torch.randn(L, n, d, generator=g, dtype=torch.float64) * scales + 2).float()


def svd_transfer(src, tgt, key, k, center):
    """The reference: a full SVD per layer and side (NumPy), then the paper's formulas; `[L_t, d_t]`."""
    out = []
    for t, s in enumerate(relative_depth_layer_map(src.shape[0], tgt.shape[0])):
        Hs, Ht = src[s].double().numpy(), tgt[t].double().numpy()
        if center:
            Hs, Ht = Hs - Hs.mean(0), Ht - Ht.mean(0)
        Vs = np.linalg.svd(Hs, full_matrices=False)[2][:k]
        Vt = np.linalg.svd(Ht, full_matrices=False)[2][:k]
        M = np.linalg.pinv(Hs @ Vs.T) @ (Ht @ Vt.T)
        out.append(((key[s].double().numpy() @ Vs.T) @ M) @ Vt)
    return np.stack(out)


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("n, ds, dt", [(24, 64, 48), (40, 16, 12)])  # Gram path (n < d), covariance path (n > d)
def test_transfer_equals_full_svd(n, ds, dt, center):
    src, tgt = rand_states(6, n, ds, 1), rand_states(4, n, dt, 2)
    key = torch.randn(6, ds, generator=torch.Generator().manual_seed(3))
    for k in (1, 4, 11):
        out = SubspaceMap.fit(src, tgt, k=k, center=center).transfer(MasterKey(key)).vectors
        ref = svd_transfer(src, tgt, key, k, center)
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-5, rtol=1e-5)


def test_singular_values_and_orthonormal_vectors():
    H = rand_states(1, 20, 50, 4)[0]
    V, sigma = top_right_singular(H, 6)
    ref = np.linalg.svd(H.double().numpy(), compute_uv=False)[:6]
    np.testing.assert_allclose(sigma.numpy(), ref, rtol=1e-9)
    np.testing.assert_allclose((V @ V.T).numpy(), np.eye(6), atol=1e-9)


def test_bases_for_the_largest_k_serve_smaller_k_exactly():
    src, tgt = rand_states(5, 30, 40, 5), rand_states(3, 30, 24, 6)
    key = MasterKey(torch.randn(5, 40, generator=torch.Generator().manual_seed(7)))
    counter = {}
    sb = Bases.compute(src, 16, layers=relative_depth_layer_map(5, 3), counter=counter)
    tb = Bases.compute(tgt, 16, counter=counter)
    assert counter["decompositions"] == 3 + 3  # three mapped source layers, three target layers
    for k in (1, 4, 16):
        sliced = SubspaceMap.fit(src, tgt, k=k, source_bases=sb, target_bases=tb).transfer(key).vectors
        direct = SubspaceMap.fit(src, tgt, k=k).transfer(key).vectors
        torch.testing.assert_close(sliced, direct, atol=1e-6, rtol=1e-6)
    with pytest.raises(ConfigError, match="do not cover k=17"):
        SubspaceMap.fit(src, tgt, k=17, source_bases=sb, target_bases=tb)
    with pytest.raises(ConfigError, match="do not cover"):  # raw bases cannot serve a centred fit
        SubspaceMap.fit(src, tgt, k=4, center=True, source_bases=sb, target_bases=tb)


def test_numerically_zero_directions_are_zero_rows():
    H = rand_states(1, 6, 30, 8)[0]
    H = torch.cat([H, H])  # 12 prompts, rank 6
    V, _ = top_right_singular(H, 9)
    assert (V[:6].norm(dim=1) > 0.99).all() and (V[6:] == 0).all()
    assert Bases({0: V}, {0: torch.zeros(9)}, 9, False).rank(0) == 6


def test_pipeline_decomposes_each_layer_once_for_a_k_grid(tmp_path):
    src, tgt, tok = tiny_model("llama", 4, 32, 0), tiny_model("qwen2", 3, 24, 1), char_tokenizer()
    template = "Q: {question}\nA:"

    def extractor():  # a fresh process: only the disk cache is shared
        return Extractor(ArtifactCache(tmp_path), progress=False, preloaded={"s": (src, tok), "t": (tgt, tok)})

    ex = extractor()
    ex.identity = lambda spec: {"name": spec}  # tiny in-memory models have no files to identify
    maps = {}
    for k in (8, 4, 2):  # largest first, as `unlock-eval sweep` orders a grid
        maps[k], _ = ex.subspace_map("s", "t", template, QUESTIONS, k, False, "relative_depth")
    assert ex.decompositions == len(set(relative_depth_layer_map(4, 3))) + 3
    assert ex.forward_passes == 2 * 2  # two models, 10 prompts in batches of 8
    key = MasterKey(torch.randn(4, 32, generator=torch.Generator().manual_seed(9)))
    states = {m: ex.states(m, template, QUESTIONS)[0] for m in ("s", "t")}
    for k, smap in maps.items():
        direct = SubspaceMap.fit(states["s"], states["t"], k=k).transfer(key).vectors
        torch.testing.assert_close(smap.transfer(key).vectors, direct, atol=1e-5, rtol=1e-5)
    ex2 = extractor()
    ex2.identity = ex.identity
    ex2.subspace_map("s", "t", template, QUESTIONS, 6, False, "relative_depth")  # a new k <= 8: sliced
    assert ex2.decompositions == 0 and ex2.forward_passes == 0
    ex2.subspace_map("s", "t", template, QUESTIONS, 9, False, "relative_depth")  # a larger k: decomposed again
    assert ex2.decompositions == len(set(relative_depth_layer_map(4, 3))) + 3
    stored = [Bases.from_artifact(*load_artifact(p)) for p in (tmp_path / "bases").glob("*.safetensors")]
    assert sorted((b.metadata["model_spec"], b.k) for b in stored) == [("s", 9), ("t", 9)]  # replaced, not added
    described = sorted(entry.description for entry in list_entries(tmp_path, ["bases"]))
    assert described == ["s top-9 bases of 3 layers n=10", "t top-9 bases of 3 layers n=10"]
