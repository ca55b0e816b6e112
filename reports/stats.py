"""Paired and unpaired statistics for run-vs-baseline comparison cells: bootstrap intervals and McNemar's test."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

DEFAULT_RESAMPLES = 2000
MIN_RESAMPLES = 1000
_CHUNK_ELEMENTS = 4_000_000  # bound on resampled indices held in memory at once

LEGEND = (
    "Δ = mean(run) − mean(baseline) [95% interval]: percentile bootstrap over documents "
    f"(fixed seed, {DEFAULT_RESAMPLES} resamples, never fewer than {MIN_RESAMPLES}). "
    "* = the interval excludes 0. † = unpaired, the two runs cannot be matched document by document: where either "
    "lacks logged samples (--log_samples), a normal interval from lm-eval's standard errors; where both have samples "
    "of different documents, each run resampled independently. p-values (paired 0/1 scores only) are exact McNemar "
    "tests on the discordant documents."
)


@dataclass(frozen=True)
class Delta:
    """Difference of mean scores with its bootstrap interval; n_run == n_base when paired."""

    delta: float
    low: float
    high: float
    p_value: float | None
    n_run: int
    n_base: int
    paired: bool

    @property
    def n(self) -> int:
        """Documents compared: the paired count, or all documents of both runs when unpaired."""
        return self.n_run if self.paired else self.n_run + self.n_base

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def _check(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty list of per-document scores")
    return arr


def _check_options(resamples: int, level: float) -> None:
    if resamples < MIN_RESAMPLES:
        raise ValueError(f"resamples must be >= {MIN_RESAMPLES}, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def _bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` resamples (indices drawn with replacement), drawn in row chunks to bound memory."""
    n = values.size
    rows = max(1, _CHUNK_ELEMENTS // n)
    means = np.empty(resamples)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def _interval(means: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def mcnemar_p(run: np.ndarray, baseline: np.ndarray) -> float | None:
    """Exact two-sided McNemar p-value for paired 0/1 scores; None when any score is not binary."""
    if not (np.isin(run, (0.0, 1.0)).all() and np.isin(baseline, (0.0, 1.0)).all()):
        return None
    n01 = int(np.sum((baseline == 0) & (run == 1)))  # run fixed what the baseline got wrong
    n10 = int(np.sum((baseline == 1) & (run == 0)))  # run broke what the baseline got right
    if n01 + n10 == 0:
        return 1.0
    return float(binomtest(min(n01, n10), n01 + n10, 0.5).pvalue)


def delta(
    run: Sequence[float],
    baseline: Sequence[float],
    paired: bool,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> Delta:
    """Run minus baseline with a bootstrap interval. Paired: the same documents in the same order, the per-document
    differences resampled (and McNemar's p). Unpaired: each run's mean resampled independently (run first)."""
    _check_options(resamples, level)
    r, b = _check(run, "run"), _check(baseline, "baseline")
    rng = np.random.default_rng(seed)
    if not paired:
        means = _bootstrap_means(r, resamples, rng) - _bootstrap_means(b, resamples, rng)
        low, high = _interval(means, level)
        return Delta(float(r.mean() - b.mean()), low, high, None, r.size, b.size, paired=False)
    if r.size != b.size:
        raise ValueError(f"paired scores need equal lengths, got {r.size} (run) and {b.size} (baseline)")
    diffs = r - b
    low, high = _interval(_bootstrap_means(diffs, resamples, rng), level)
    return Delta(float(diffs.mean()), low, high, mcnemar_p(r, b), r.size, b.size, paired=True)


def paired_delta(run: Sequence[float], baseline: Sequence[float], **options) -> Delta:
    """Run vs baseline scored on the same documents in the same order (delta, paired)."""
    return delta(run, baseline, paired=True, **options)


def unpaired_delta(run: Sequence[float], baseline: Sequence[float], **options) -> Delta:
    """Runs without a shared document list (delta, unpaired)."""
    return delta(run, baseline, paired=False, **options)


def _signed(x: float, digits: int) -> str:
    return f"{round(x, digits) + 0.0:+.{digits}f}"  # + 0.0 turns -0.0 into 0.0


def format_delta(d: Delta, digits: int = 3) -> str:
    """Table cell such as "+0.250 [+0.125, +0.375]*"; "*" when significant, "†" when unpaired."""
    cell = f"{_signed(d.delta, digits)} [{_signed(d.low, digits)}, {_signed(d.high, digits)}]"
    return cell + ("*" if d.significant else "") + ("" if d.paired else "†")
