"""reports/stats.py: paired/unpaired bootstrap intervals, McNemar p-values and table-cell formatting."""

import numpy as np
import pytest
from scipy.stats import binomtest

from unlock_eval.reports import stats
from unlock_eval.reports.stats import LEGEND, Delta, format_delta, paired_delta, unpaired_delta

PLANTED = [3, 5, 7, 8, 11, 17, 19, 22, 26, 30, 33, 38]  # the 12 documents the run fixes


def planted_pair():
    baseline = [0.0] * 40
    run = [1.0 if i in PLANTED else 0.0 for i in range(40)]
    return run, baseline


def correlated_pair(n=200, flips=10, seed=1):
    rng = np.random.default_rng(seed)
    baseline = rng.integers(0, 2, size=n).astype(float)
    run = baseline.copy()
    run[rng.choice(n, size=flips, replace=False)] = 1.0  # the run fixes a few documents, keeps the rest
    return run.tolist(), baseline.tolist()


def reference_interval(samples, resamples, seed, level=0.95):
    """Slow, obvious bootstrap: one Python-loop iteration per resample, drawing from the same Generator stream.
    `samples` is a list of arrays resampled one after the other; the statistic is first mean minus the rest."""
    rng = np.random.default_rng(seed)
    per_sample = []
    for values in samples:
        means = []
        for _ in range(resamples):
            idx = rng.integers(0, len(values), size=len(values))
            means.append(sum(values[i] for i in idx) / len(values))
        per_sample.append(np.array(means))
    stat = per_sample[0] - sum(per_sample[1:]) if len(per_sample) > 1 else per_sample[0]
    alpha = (1 - level) / 2
    return np.quantile(stat, alpha), np.quantile(stat, 1 - alpha)


def test_planted_difference_is_significant_with_exact_mcnemar():
    run, baseline = planted_pair()
    d = paired_delta(run, baseline)
    assert d.delta == pytest.approx(0.3)
    assert 0 < d.low < 0.3 < d.high
    assert d.significant and d.paired and d.n == 40
    assert d.p_value == pytest.approx(binomtest(0, 12, 0.5).pvalue)
    assert d.p_value == pytest.approx(0.000488, abs=1e-6)
    assert format_delta(d).endswith("]*")
    assert format_delta(d).startswith("+0.300 [+")


def test_mcnemar_counts_discordant_documents_in_both_directions():
    # baseline right & run wrong on 2 docs, baseline wrong & run right on 9: binomtest(2, 11)
    baseline = [1.0] * 2 + [0.0] * 9 + [1.0] * 10 + [0.0] * 10
    run = [0.0] * 2 + [1.0] * 9 + [1.0] * 10 + [0.0] * 10
    d = paired_delta(run, baseline)
    assert d.delta == pytest.approx(7 / 31)
    assert d.p_value == pytest.approx(binomtest(2, 11, 0.5).pvalue)
    # the test is symmetric: swapping the runs negates delta and keeps p
    swapped = paired_delta(baseline, run)
    assert swapped.delta == pytest.approx(-d.delta)
    assert swapped.p_value == pytest.approx(d.p_value)
    assert swapped.low == pytest.approx(-d.high) and swapped.high == pytest.approx(-d.low)


def test_identical_runs_give_zero_interval_and_p_one():
    scores = [float(i % 3 == 0) for i in range(40)]
    d = paired_delta(scores, list(scores))
    assert (d.delta, d.low, d.high, d.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not d.significant
    assert format_delta(d) == "+0.000 [+0.000, +0.000]"


def test_single_flip_is_not_significant():
    baseline = [float(i % 2) for i in range(40)]
    run = list(baseline)
    run[0] = 1.0
    d = paired_delta(run, baseline)
    assert d.delta == pytest.approx(0.025)
    assert d.low == 0.0 and d.high > 0.025
    assert not d.significant
    assert d.p_value == 1.0
    assert "*" not in format_delta(d)


def test_paired_interval_matches_slow_reference_bootstrap():
    # continuous scores, so every resample mean is distinct and the quantiles pin down the exact draws
    rng = np.random.default_rng(5)
    baseline = rng.random(60)
    run = baseline + rng.normal(0.05, 0.1, 60)
    diffs = run - baseline
    intervals = []
    for seed in (0, 7):
        d = paired_delta(run.tolist(), baseline.tolist(), resamples=1000, seed=seed)
        low, high = reference_interval([diffs], 1000, seed)
        assert (d.low, d.high) == pytest.approx((low, high), abs=1e-12)
        intervals.append((d.low, d.high))
    # the seed is honoured: reproducible for one seed, different for another
    assert paired_delta(run.tolist(), baseline.tolist(), seed=0) == paired_delta(run.tolist(), baseline.tolist())
    assert intervals[0] != intervals[1]


def test_chunked_draws_equal_one_block(monkeypatch):
    run, baseline = correlated_pair(n=50, flips=6)
    whole = paired_delta(run, baseline)
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 120)  # two or three resamples per chunk
    assert paired_delta(run, baseline) == whole


def test_unpaired_interval_matches_slow_reference_and_is_marked():
    rng = np.random.default_rng(6)
    run, baseline = rng.random(30), rng.random(25) * 0.8
    d = unpaired_delta(run.tolist(), baseline.tolist(), resamples=1000, seed=3)
    low, high = reference_interval([run, baseline], 1000, 3)
    assert (d.low, d.high) == pytest.approx((low, high), abs=1e-12)
    assert d.delta == pytest.approx(run.mean() - baseline.mean())
    assert not d.paired and d.p_value is None and (d.n_run, d.n_base) == (30, 25)
    assert format_delta(d).endswith("†")
    binary = unpaired_delta([float(i % 3 != 0) for i in range(30)], [float(i % 4 == 0) for i in range(25)])
    assert binary.p_value is None and not binary.paired


def test_interval_brackets_delta_and_shrinks_with_more_documents():
    run, baseline = correlated_pair(n=100, flips=8)
    small = paired_delta(run, baseline)
    large = paired_delta(run * 4, baseline * 4)
    for d in (small, large):
        assert d.low <= d.delta <= d.high
    assert large.delta == pytest.approx(small.delta)
    assert large.high - large.low < 0.7 * (small.high - small.low)


def test_unpaired_is_wider_than_paired_for_correlated_runs():
    run, baseline = correlated_pair()
    paired, unpaired = paired_delta(run, baseline), unpaired_delta(run, baseline)
    assert paired.delta == pytest.approx(unpaired.delta)
    assert unpaired.high - unpaired.low > 3 * (paired.high - paired.low)
    assert paired.significant and not unpaired.significant


def test_non_binary_scores_have_no_p_value():
    d = paired_delta([0.5, 1.0, 0.25, 0.0], [0.0, 1.0, 0.25, 0.0])
    assert d.p_value is None
    assert d.delta == pytest.approx(0.125)


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        (paired_delta, {"run": [1.0, 0.0], "baseline": [1.0, 0.0, 1.0]}),
        (paired_delta, {"run": [], "baseline": []}),
        (paired_delta, {"run": [1.0], "baseline": [0.0], "resamples": 500}),
        (unpaired_delta, {"run": [1.0], "baseline": [0.0], "resamples": 999}),
        (paired_delta, {"run": [1.0], "baseline": [0.0], "level": 1.0}),
    ],
)
def test_invalid_input_is_refused(call, kwargs):
    with pytest.raises(ValueError):
        call(**kwargs)


def test_format_and_legend():
    d = Delta(delta=-0.1234, low=-0.2, high=-0.05, p_value=0.01, n_run=10, n_base=12, paired=False)
    assert d.significant and d.n == 22
    assert format_delta(d) == "-0.123 [-0.200, -0.050]*†"
    assert format_delta(d, digits=2) == "-0.12 [-0.20, -0.05]*†"
    tiny = Delta(delta=-1e-9, low=-0.01, high=0.02, p_value=None, n_run=5, n_base=5, paired=True)
    assert format_delta(tiny, digits=1) == "+0.0 [+0.0, +0.0]"
    for word in ("*", "†", "95%", "bootstrap", "seed", "2000", "McNemar"):
        assert word in LEGEND
