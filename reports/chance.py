"""Strict accuracy, fallback share and the chance level of the lenient accuracy, from a task's logged samples.

Each sample of our checker tasks logs the checker's record (answer, rule, gold, correct) in ``filtered_resps``.
From those records, per task column of a run:

- **strict**: the share of documents answered correctly by a marker rule (``unlock_eval.checker.STRICT_RULES``);
- **fallback share**: of the correct answers, the share a fallback rule (``last_number``, ``choice``) found;
- **reference**: the share of documents right when the answer is read the way the paper's official code reads it
  (the record's ``reference_correct``: ``unlock_eval.checker.reference``), where the records carry it;
- **chance**: how often the lenient rules hit by luck. Each output's extracted answer is checked against the gold
  of *another* document of the same task: the documents are put in a random order (seed ``CHANCE_SEED + draw``)
  and each takes the gold of the next one in that order (a random cyclic derangement), over ``CHANCE_DRAWS``
  draws. The level is the mean hit rate over the draws; its interval is the binomial 95% range of a run that only
  hits at that rate on the same number of documents (``level ± 1.96 √(level(1−level)/n)``, clipped to [0, 1]).
  ``at_chance`` marks a lenient accuracy not above that interval.

Verdicts are cached per (answer, gold) pair, so repeated answers (lists of small numbers) cost one check each.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from unlock_eval.checker import STRICT_RULES, check, check_choice

CHANCE_SEED = 1234
CHANCE_DRAWS = 5
Z95 = 1.96


@dataclass
class Chance:
    """The chance level of one task column: mean hit rate over the draws, its interval, and the draws' rates."""

    level: float
    low: float
    high: float
    draws: list[float]
    n: int


@dataclass
class Scoring:
    """Strict accuracy, lenient accuracy (both over the documents with a checker record), the share of correct
    answers that came from a fallback rule (None without correct answers), per-rule counts, the chance level, and
    the accuracy under the paper's reading (over the records that carry one; None when none does)."""

    n: int
    lenient: float
    strict: float
    fallback_share: float | None
    rule_counts: dict[str, int]
    chance: Chance | None = None
    reference: float | None = None

    @property
    def at_chance(self) -> bool | None:
        """True when the lenient accuracy is not above its chance interval (None without a chance level)."""
        return None if self.chance is None else self.lenient <= self.chance.high


def record_of(sample: dict[str, Any]) -> dict[str, Any] | None:
    """The checker's record a sample logged in ``filtered_resps`` (a JSON string or a dict), else None."""
    resps = sample.get("filtered_resps") or [None]
    first = resps[0]
    if isinstance(first, list):  # a filter that kept every response
        first = first[0] if first else None
    if isinstance(first, str):
        try:
            first = json.loads(first)
        except ValueError:
            return None
    if isinstance(first, dict) and {"answer", "rule", "correct"} <= set(first):
        return first
    return None


def _gold(sample: dict[str, Any], record: dict[str, Any]) -> tuple[str, ...]:
    """What a document's answer is judged against: (letter, option) for multiple choice, else (gold,)."""
    doc = sample.get("doc") or {}
    if "gold_option" in doc:
        return (str(doc.get("gold_answer", "")), str(doc.get("gold_option", "")))
    return (str(record.get("gold", "")),)


class _Judge:
    """Cached verdicts of (answer, gold) pairs."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, tuple[str, ...]], bool] = {}

    def __call__(self, answer: str | None, gold: tuple[str, ...]) -> bool:
        if answer is None:
            return False
        key = (answer, gold)
        if key not in self.cache:
            verdict = check_choice(answer, *gold) if len(gold) == 2 else check(answer, gold[0])
            self.cache[key] = verdict.equal
        return self.cache[key]


def chance_level(
    items: Iterable[tuple[str, str | None, tuple[str, ...]]], draws: int = CHANCE_DRAWS, seed: int = CHANCE_SEED
) -> Chance | None:
    """Chance level of ``items`` = (task, extracted answer, gold) per document: each answer judged against the gold
    of another document of its task, over ``draws`` fixed-seed derangements (see the module docstring)."""
    by_task: dict[str, list[tuple[str | None, tuple[str, ...]]]] = {}
    for task, answer, gold in items:
        by_task.setdefault(task, []).append((answer, gold))
    n = sum(len(docs) for docs in by_task.values())
    if n == 0 or all(len(docs) < 2 for docs in by_task.values()):
        return None
    judge = _Judge()
    rates = []
    for draw in range(draws):
        rng = random.Random(seed + draw)
        hits = counted = 0
        for task in sorted(by_task):
            docs = by_task[task]
            if len(docs) < 2:
                continue
            order = list(range(len(docs)))
            rng.shuffle(order)
            for pos, i in enumerate(order):
                other = order[(pos + 1) % len(order)]
                hits += judge(docs[i][0], docs[other][1])
                counted += 1
        rates.append(hits / counted)
    level = sum(rates) / len(rates)
    half = Z95 * math.sqrt(level * (1 - level) / n)
    return Chance(level, max(0.0, level - half), min(1.0, level + half), rates, n)


def scoring(samples: dict[tuple[str, int], dict[str, Any]] | None, chance: bool = True) -> Scoring | None:
    """Strict and lenient accuracy, fallback share, rule counts and (``chance``) the chance level of one task
    column's samples, keyed (task, doc_id); None when no sample carries a checker record."""
    if not samples:
        return None
    rows = []
    for (task, _doc_id), sample in sorted(samples.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        record = record_of(sample)
        if record is not None:
            rows.append((task, sample, record))
    if not rows:
        return None
    n = len(rows)
    correct = [r for _, _, r in rows if r["correct"]]
    strict = [r for r in correct if r["rule"] in STRICT_RULES]
    counts: dict[str, int] = {}
    for _, _, record in rows:
        rule = record["rule"] or "none"
        counts[rule] = counts.get(rule, 0) + 1
    read = [bool(r["reference_correct"]) for _, _, r in rows if r.get("reference_correct") is not None]
    result = Scoring(
        n=n,
        lenient=len(correct) / n,
        strict=len(strict) / n,
        fallback_share=(len(correct) - len(strict)) / len(correct) if correct else None,
        rule_counts=counts,
        reference=sum(read) / len(read) if read else None,
    )
    if chance:
        result.chance = chance_level((task, r["answer"], _gold(s, r)) for task, s, r in rows)
    return result
