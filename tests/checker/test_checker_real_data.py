"""unlock_eval.checker on the real benchmark data in ../shared/data ($UNLOCK_EVAL_DATA_DIR): every GSM8K
and MATH gold answer extracts and equals itself through math-verify, MATH-500/AGIEval answers equal
the boxed answers of their MATH solutions, gold answers that differ only in layout are equal, and
random cross-problem pairs stay under 0.5% false positives.

The pair builders and the ``surface_equal`` oracle are also used by benchmarks/checker_agreement.py.
"""

from __future__ import annotations

import json
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import pytest

from unlock_eval.checker import Checker, Verdict, extract


def data_dir() -> Path:
    env = os.environ.get("UNLOCK_EVAL_DATA_DIR", "").strip()
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def read_jsonl(relative: str) -> list[dict]:
    with open(data_dir() / relative, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --------------------------------------------------------------------------------------------------
# Pair builders and the 'truly equal' oracle (shared with the benchmark)
# --------------------------------------------------------------------------------------------------


def math_golds() -> list[str]:
    """The 5000 MATH test gold answers (last \\boxed{} of each solution), in file order."""
    return [extract(row["solution"]).answer for row in read_jsonl("math/test.jsonl")]


def gsm8k_golds() -> list[str]:
    return [row["answer"].split("####")[-1].strip() for row in read_jsonl("gsm8k/test.jsonl")]


def same_problem_pairs() -> list[tuple[str, str, str]]:
    """(source, pred, gold) pairs that must be equal: MATH-500's ``answer`` vs the boxed answer of
    its solution, AGIEval Math's ``answer`` vs the boxed answer of ``other.solution``."""
    pairs = [("math500", r["answer"], extract(r["solution"]).answer) for r in read_jsonl("math/math500.jsonl")]
    pairs += [
        ("agieval_math", r["answer"], extract(r["other"]["solution"]).answer) for r in read_jsonl("agieval/math.jsonl")
    ]
    return pairs


_TRAILING_TEXT = re.compile(r"(?<=\S)\s*\\(?:text|mbox|mathrm)\{[^{}]*\}$")
_WHOLE_TEXT = re.compile(r"^\\(?:text|mbox|mathrm)\{([^{}]*)\}$")
_ASSIGNMENT = re.compile(r"^[A-Za-z]\s*=\s*")
_RATIONAL = re.compile(r"^(-?)(?:(\d+(?:\.\d+)?)|\\frac\{(\d+)\}\{(\d+)\}|(\d+)/(\d+))$")


def _surface_key(answer: str) -> str:
    s = _TRAILING_TEXT.sub("", answer.strip())  # units: '5\text{ inches}'
    s = _WHOLE_TEXT.sub(r"\1", s)
    s = re.sub(r"\\(?:left|right)(?![a-z])|\\[,;:! ]|\^\{?\\circ\}?|\\%|\$", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", ",")
    s = _ASSIGNMENT.sub("", s)  # 'b = 4'
    return re.sub(r"\s+", "", s).rstrip(".")


def _rational(key: str) -> Fraction | None:
    m = _RATIONAL.match(key)
    if not m:
        return None
    sign = -1 if m.group(1) else 1
    if m.group(2):
        return sign * Fraction(m.group(2))
    num, den = (m.group(3), m.group(4)) if m.group(3) else (m.group(5), m.group(6))
    return sign * Fraction(int(num), int(den)) if int(den) else None


def surface_equal(a: str, b: str) -> bool:
    """A deliberately simple, independent 'truly equal' oracle for cross-problem pairs: equal after
    dropping layout (spaces, \\left/\\right, $, degrees, trailing \\text units, 'x =') or equal as
    plain rationals. Pairs it calls equal are excluded from the false-positive count."""
    ka, kb = _surface_key(a), _surface_key(b)
    if ka == kb:
        return True
    ra, rb = _rational(ka), _rational(kb)
    return ra is not None and ra == rb


def cross_pairs(golds: list[str], n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` random (pred, gold) pairs of gold answers of two different problems that are not
    ``surface_equal`` (seeded, so the same pairs every run)."""
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        i, j = rng.sample(range(len(golds)), 2)
        if not surface_equal(golds[i], golds[j]):
            pairs.append((golds[i], golds[j]))
    return pairs


def check_all(pairs: list[tuple[str, str]], workers: int = 2, **checker_kwargs) -> list[Verdict]:
    """Check (pred, gold) pairs on ``workers`` Checkers in parallel (one worker process each)."""
    chunks = [pairs[k::workers] for k in range(workers)]

    def run(chunk):
        with Checker(**checker_kwargs) as ck:
            return [ck.check(pred, gold) for pred, gold in chunk]

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(run, chunks))
    out: list[Verdict] = [None] * len(pairs)  # type: ignore[list-item]
    for k, chunk_results in enumerate(results):
        out[k::workers] = chunk_results
    return out


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------

pytestmark = pytest.mark.skipif(
    not (data_dir() / "math" / "test.jsonl").is_file(),
    reason=f"benchmark data not found at {data_dir()} (set UNLOCK_EVAL_DATA_DIR to the shared/data folder)",
)


def layout_only_pairs(golds: list[str]) -> list[tuple[str, str]]:
    """Every ordered pair of two different gold answers (of different problems) that ``surface_equal``
    calls equal: the same value written another way ('0.25\\,\\text{ cm}' / '\\frac{1}{4}', 'x = -1' / '-1',
    '105^\\circ' / '105', '(-\\infty, 0]' / '(-\\infty,0]'). These are excluded from the false-positive
    count, so the checker must call them equal."""
    groups: dict[object, set[str]] = {}
    for gold in set(golds):
        key = _surface_key(gold)
        value = _rational(key)
        groups.setdefault(key if value is None else value, set()).add(gold)
    return [(a, b) for group in groups.values() for a in sorted(group) for b in sorted(group) if a != b]


# Pairs the oracle calls equal on purpose although they are not: it drops any 'x =', so two
# assignments to different variables (MATH gold 'b=4' vs 'x = 4') look alike to it.
def _different_variables(a: str, b: str) -> bool:
    la, lb = _ASSIGNMENT.match(a.strip()), _ASSIGNMENT.match(b.strip())
    return bool(la and lb) and la.group(0)[0] != lb.group(0)[0]


# A known gap of the checker (math-verify 0.9's percentages), pinned so that any change shows:
# '12\%' equals '12', but a decimal percentage does not equal its bare number.
KNOWN_MISSES = {("7.2", "7.2\\%"), ("7.2\\%", "7.2")}


def test_gold_answers_that_differ_only_in_layout_are_equal():
    pairs = [(a, b) for a, b in layout_only_pairs(math_golds() + gsm8k_golds()) if not _different_variables(a, b)]
    assert len(pairs) > 400  # units, degrees, 'x =', \dfrac, 0.25 vs \frac14, spacing, ...
    verdicts = check_all(pairs)
    misses = {pair for pair, v in zip(pairs, verdicts) if not v.equal}
    assert misses == KNOWN_MISSES, sorted(misses ^ KNOWN_MISSES)


@pytest.mark.slow
def test_every_gsm8k_gold_answer_extracts_and_equals_itself():
    rows = read_jsonl("gsm8k/test.jsonl")
    assert len(rows) == 1319
    pairs = []
    for row in rows:
        found = extract(row["answer"])
        marked = row["answer"].split("####")[-1].strip()
        assert found.rule == "gsm8k" and found.answer == marked, row["answer"][-80:]
        pairs.append((found.answer, marked))
        pairs.append((found.answer, marked.replace(",", "")))  # '2,125' vs '2125'
    verdicts = check_all(pairs, shortcut=False)  # through math-verify, not by string identity
    failures = [(p, g, v) for (p, g), v in zip(pairs, verdicts) if not v.equal]
    assert not failures, failures[:20]


@pytest.mark.slow
def test_every_math_gold_answer_extracts_and_equals_itself():
    rows = read_jsonl("math/test.jsonl")
    assert len(rows) == 5000
    golds = []
    for row in rows:
        found = extract(row["solution"])
        assert found.rule == "boxed" and found.answer, row["unique_id"]
        golds.append(found.answer)
    verdicts = check_all([(g, g) for g in golds], shortcut=False)  # through math-verify
    failures = [(g, v) for g, v in zip(golds, verdicts) if not v.equal]
    assert not failures, failures[:20]


@pytest.mark.slow
def test_math500_and_agieval_answers_equal_their_math_solutions():
    pairs = same_problem_pairs()
    assert len(pairs) == 1500
    verdicts = check_all([(pred, gold) for _, pred, gold in pairs], shortcut=False)
    failures = [(src, p, g, v) for (src, p, g), v in zip(pairs, verdicts) if not v.equal]
    assert not failures, failures[:20]


@pytest.mark.slow
def test_cross_problem_false_positive_rate_is_below_half_a_percent():
    pairs = cross_pairs(math_golds(), 5000, seed=20260406) + cross_pairs(gsm8k_golds(), 1000, seed=7)
    verdicts = check_all(pairs)
    positives = [(p, g, v.reason) for (p, g), v in zip(pairs, verdicts) if v.equal]
    rate = len(positives) / len(pairs)
    print(f"\ncross-problem pairs: {len(pairs)}, judged equal: {len(positives)} ({rate:.3%})")
    for p in positives:
        print("  false positive:", p)
    assert rate < 0.005, positives
    assert sum(v.reason == "timeout" for v in verdicts) <= 5
