"""What steering changed in the output, from lm-eval sample logs (`--log_samples`): step-by-step structure,
degenerate output, repetition, answer-found rate, and the distribution of the first generated word (its entropy and
top words: the paper's "sharpening"). Lengths are the table's own column (reports.table).

The rules that read one text (steps, degeneration) are reports.degeneration's."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from unlock_eval.reports.degeneration import DEGENERATE_LEGEND, MIN_STEPS, STEPS_LEGEND, degenerate, steps

NGRAM = 4
FIRST_WORD = re.compile(r"[^\W\d_]+|\d+|[^\w\s]")


def text_of(sample: dict[str, Any]) -> str:
    """The generated text of a logged sample (generate_until: its first response)."""
    resps = sample.get("resps") or [[""]]
    first = resps[0][0] if resps and resps[0] else ""
    return first if isinstance(first, str) else ""


def question_of(sample: dict[str, Any]) -> str:
    """The question of a logged sample's document (`question`: GSM8K, arith, our processed docs; `problem`: MATH)."""
    doc = sample.get("doc")
    question = (doc.get("question") or doc.get("problem")) if isinstance(doc, dict) else None
    return question if isinstance(question, str) else ""


def repetition(text: str) -> float:
    """Share of repeated word 4-grams (1 - distinct / all); 0 for texts under 4 words."""
    words = re.findall(r"\w+", text.lower())
    grams = [tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def first_word(text: str) -> str:
    match = FIRST_WORD.search(text)
    return match.group(0).lower() if match else "(empty)"


def entropy_bits(counts: Counter) -> float:
    total = sum(counts.values())
    bits = -sum(c / total * math.log2(c / total) for c in counts.values() if c) if total else 0.0
    return bits if bits > 0 else 0.0  # one word everywhere: 0, not -0


@dataclass
class Behaviour:
    """Per run (or task): shares and means over the logged samples."""

    samples: int
    step_structured: float
    degenerate: float  # share of degenerate outputs (see `degenerate`)
    repetition: float
    answer_found: float | None  # from the samples' `answer_found` metric (our tasks), else None
    first_word_entropy: float  # bits, over documents
    top_first_words: list[tuple[str, float]] = field(default_factory=list)  # (word, share), most common first
    degenerate_reasons: dict[str, float] = field(default_factory=dict)  # reason -> share of all outputs

    def reasons_text(self) -> str:
        return ", ".join(f"{reason} {share:.0%}" for reason, share in self.degenerate_reasons.items())

    def top_words_text(self, count: int = 3) -> str:
        return ", ".join(f"{word} {share:.0%}" for word, share in self.top_first_words[:count])


def behaviour(samples: list[dict[str, Any]]) -> Behaviour | None:
    """The metrics of these samples; None when there are none."""
    if not samples:
        return None
    texts = [text_of(s) for s in samples]
    questions = [question_of(s) for s in samples]
    reasons = [degenerate(t, q) for t, q in zip(texts, questions)]
    why = Counter(r for r in reasons if r)
    words = Counter(first_word(t) for t in texts)
    found = [float(s["answer_found"]) for s in samples if isinstance(s.get("answer_found"), (int, float))]
    n = len(texts)
    return Behaviour(
        samples=n,
        step_structured=sum(not r and steps(t, q) >= MIN_STEPS for t, q, r in zip(texts, questions, reasons)) / n,
        degenerate=sum(why.values()) / n,
        repetition=sum(map(repetition, texts)) / n,
        answer_found=sum(found) / len(found) if found else None,
        first_word_entropy=entropy_bits(words),
        top_first_words=[(word, count / n) for word, count in words.most_common(5)],
        degenerate_reasons={reason: count / n for reason, count in why.most_common()},
    )


def run_samples(run) -> list[dict[str, Any]]:
    """Every logged sample of a report Run (all its task columns)."""
    return [s for task in run.tasks.values() for s in (task.samples or {}).values()]


def format_behaviour(runs) -> str:
    """`unlock-eval behaviour`: one row per run and task column, from their logged samples."""
    from tabulate import tabulate

    rows = []
    for run in runs:
        for column, task in sorted(run.tasks.items()):
            b = behaviour(list((task.samples or {}).values()))
            if b is None:
                rows.append([run.label, column, 0, "", "", "", "", "", "no samples logged (--log_samples)"])
                continue
            found = "" if b.answer_found is None else f"{b.answer_found:.3f}"
            degenerate_cell = f"{b.degenerate:.0%}" + (f" ({b.reasons_text()})" if b.degenerate_reasons else "")
            rows.append([run.label, column, b.samples, f"{b.step_structured:.0%}", degenerate_cell,
                         f"{b.repetition:.3f}", found, f"{b.first_word_entropy:.2f}", b.top_words_text()])  # fmt: skip
    headers = ["run", "task", "samples", "step-structured", "degenerate", "repetition (4-grams)", "answer found",
               "first-word entropy (bits)", "top first words"]  # fmt: skip
    legend = f"{STEPS_LEGEND}; {DEGENERATE_LEGEND}; repetition: share of repeated word {NGRAM}-grams; " + (
        "first-word entropy: over documents (lower = sharper)"
    )
    return tabulate(rows, headers=headers, disable_numparse=True) + "\n" + legend + "\n"
