"""Diagnostics on planted structure: a target that is a linear map of the source reads near 1 (held-out R², CKA,
cosine), an unrelated target reads at its chance level, and layers whose native key is flipped read as opposed."""

import pytest
import torch

from unlock_eval.methods.unlock.diagnostics import ALIGNED_R2, PairStates, diagnose_states, layer_ranges, verdict
from unlock_eval.methods.unlock.measures import heldout_r2, linear_cka

L_S, L_T, N, D_S, D_T, R = 6, 4, 40, 48, 32, 6


def planted(flip=(), related=True, seed=0):
    """Source states of rank R; target = source @ A (per layer); the unlocked variants add a direction of the
    source's subspace (the capability); in `flip` layers the target's own key points the other way."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(L_S, R, D_S, generator=g)
    Hs = torch.randn(L_S, N, R, generator=g) @ basis + 0.01 * torch.randn(L_S, N, D_S, generator=g)
    v = (torch.randn(L_S, 1, R, generator=g) @ basis) * 0.5  # the capability direction, inside the subspace
    mapping = [min((L_S - 1) * t // (L_T - 1), L_S - 1) for t in range(L_T)]
    A = torch.randn(L_T, D_S, D_T, generator=g) / D_S**0.5
    if related:
        Ht = torch.stack([Hs[s] @ A[t] for t, s in enumerate(mapping)])
        shift = torch.stack([v[s] @ A[t] for t, s in enumerate(mapping)])
    else:
        Ht = torch.randn(L_T, N, R, generator=g) @ torch.randn(L_T, R, D_T, generator=g)
        shift = torch.randn(L_T, 1, D_T, generator=g)
    sign = torch.tensor([-1.0 if t in flip else 1.0 for t in range(L_T)])[:, None, None]
    return PairStates(Hs, Hs + v, Ht, Ht + sign * shift)


def test_planted_linear_relation_reads_near_one():
    rows = diagnose_states(planted(), k=R)
    for r in rows:
        assert r.heldout_r2_k > 0.99 and r.heldout_r2_full > 0.99
        assert r.cka > 0.8 and r.cka > r.cka_chance + 0.3  # CKA is not invariant to a general linear map
        assert r.cos > 0.99 and r.cos_low > 0.95 and r.sign == "agrees" and r.aligned
        assert abs(r.key_norm_ratio - r.native_norm_ratio) < 0.01 * r.native_norm_ratio


def test_unrelated_states_read_at_chance():
    rows = diagnose_states(planted(related=False), k=R)
    for r in rows:
        assert r.heldout_r2_k < 0.2 and r.heldout_r2_full < 0.2
        assert abs(r.cka - r.cka_chance) < 0.15
    cosines = torch.tensor([r.cos for r in rows])
    assert cosines.abs().mean() < 0.5  # chance level for d=32 is sqrt(2/(pi*32)) = 0.14


def test_planted_sign_flip_is_reported_as_opposed():
    rows = diagnose_states(planted(flip={1, 2}), k=R)
    assert [r.sign for r in rows] == ["agrees", "opposes", "opposes", "agrees"]
    assert rows[1].cos < -0.99 and rows[2].cos_high < 0
    assert [r.aligned for r in rows] == [True, False, False, True]
    line = verdict(rows)
    assert "agrees with the native key in layers 0, 3" in line and "opposes the native key in layers 1–2" in line
    assert "layers=aligned would steer 0, 3" in line


def test_model_induced_has_no_native_key_and_uses_r2_only():
    pair = planted()
    pair.target_unlocked = None
    rows = diagnose_states(pair, k=R)
    assert all(r.cos is None and r.sign == "n/a" and r.aligned for r in rows)
    assert "no native key (model-induced): signs not checked" in verdict(rows)
    assert verdict(rows).endswith("layers=aligned would steer 0–3")


def test_a_prompt_induced_run_without_the_targets_own_key_says_so():
    pair = planted(flip={1})
    unchecked = diagnose_states(PairStates(pair.source_locked, pair.source_unlocked, pair.target_locked, None), k=R)
    line = verdict(unchecked, model_induced=False)
    assert "model-induced" not in line and "the target's own key was not captured in this run" in line
    assert line.endswith("layers=aligned would check the signs first, then steer at most 0–3")
    checked = diagnose_states(pair, k=R)  # what layers=aligned sees once it captured the native key
    assert verdict(checked, model_induced=False).endswith("layers=aligned would steer 0, 2–3")


def test_heldout_r2_is_out_of_sample():
    """In-sample, k = n - 1 random directions fit anything; held out, noise is not predicted."""
    g = torch.Generator().manual_seed(5)
    Hs, Ht = torch.randn(20, 30, generator=g), torch.randn(20, 30, generator=g)
    r2_k, r2_full, k_used = heldout_r2(Hs, Ht, 19, center=False, folds=5)
    assert k_used == 16 and r2_k < 0 and r2_full < 0  # worse than predicting the training mean
    cka, chance = linear_cka(Hs, Hs @ torch.randn(30, 30, generator=g))
    assert cka > chance


def test_layer_ranges_and_threshold():
    assert layer_ranges([0, 1, 2, 5, 7, 8]) == "0–2, 5, 7–8" and layer_ranges([]) == ""
    assert ALIGNED_R2 == 0.0  # better than predicting the training mean: the README states this rule


def test_diagnose_folds_and_sweep_sizes_are_refused_in_one_line_naming_the_flag(monkeypatch, capsys):
    """`unlock-eval diagnose`: --sweep-k/--sweep-n take integers >= 1, --folds 2 to the fewest prompts diagnosed (not
    clamped in silence); checked before any capture, the default folds follow a small n."""
    from unlock_eval.cli import main
    from unlock_eval.methods.unlock import diagnostics

    asked = []
    monkeypatch.setattr(diagnostics, "run_diagnosis", lambda spec, folds, *_, **__: asked.append(folds) or 1 / 0)
    base = ["diagnose", "--source", "smollm2-135m-instruct", "--target", "gemma3-270m", "--n", "16", "--k", "4"]
    for flags, message in [
        (["--sweep-k", "0"], "--sweep-k='0': expected an integer >= 1"),
        (["--sweep-n", "8,x"], "--sweep-n='x': expected an integer >= 1"),
        (["--folds", "50"], "--folds=50: expected an integer from 2 to 16 (the prompts diagnosed: n=16)"),
        (["--folds", "12", "--sweep-n", "8,32"], "--folds=12: expected an integer from 2 to 8 (the prompts "
         "diagnosed: --sweep-n 8)"),
        (["--folds", "1"], "--folds=1: expected an integer from 2 to 16 (the prompts diagnosed: n=16)"),
    ]:  # fmt: skip
        assert main([*base, *flags]) == 2
        assert capsys.readouterr().err == f"unlock-eval diagnose: error: {message}\n"
    assert asked == []
    for flags, folds in [([], 5), (["--sweep-n", "3"], 3), (["--folds", "16"], 16)]:
        with pytest.raises(ZeroDivisionError):
            main([*base, *flags])
        assert asked.pop() == folds
