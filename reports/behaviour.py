"""What steering changed in the output, from lm-eval sample logs (`--log_samples`): step-by-step structure,
repetition, answer-found rate, and the distribution of the first generated word (its entropy and top words: the
paper's "sharpening"). Lengths are the table's own column (reports.table)."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# where the final answer starts: our tasks' answer format, GSM8K's "####", a boxed answer, "Final Answer:"
ANSWER_START = re.compile(r"the final answer is|<atok>|####|\\boxed|final answer\s*:", re.IGNORECASE)
# a line that opens a step: "1.", "2)", "(3)", "Step 2", or a sequencing word
STEP_LINE = re.compile(r"^\s*(?:\(?\d{1,2}[.):]\s|step\s*\d|first\b|second\b|then\b|next\b|finally\b)", re.IGNORECASE)
STEP_LINES = 3  # "several lines": at least this many non-empty lines before the answer
NGRAM = 4
FIRST_WORD = re.compile(r"[^\W\d_]+|\d+|[^\w\s]")


def text_of(sample: dict[str, Any]) -> str:
    """The generated text of a logged sample (generate_until: its first response)."""
    resps = sample.get("resps") or [[""]]
    first = resps[0][0] if resps and resps[0] else ""
    return first if isinstance(first, str) else ""


def step_structured(text: str) -> bool:
    """Several lines (>= STEP_LINES non-empty) or a numbered/sequenced step before the final answer."""
    match = ANSWER_START.search(text)
    lines = [line for line in text[: match.start() if match else len(text)].splitlines() if line.strip()]
    return len(lines) >= STEP_LINES or any(STEP_LINE.match(line) for line in lines)


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
    repetition: float
    answer_found: float | None  # from the samples' `answer_found` metric (our tasks), else None
    first_word_entropy: float  # bits, over documents
    top_first_words: list[tuple[str, float]] = field(default_factory=list)  # (word, share), most common first

    def top_words_text(self, count: int = 3) -> str:
        return ", ".join(f"{word} {share:.0%}" for word, share in self.top_first_words[:count])


def behaviour(samples: list[dict[str, Any]]) -> Behaviour | None:
    """The metrics of these samples; None when there are none."""
    if not samples:
        return None
    texts = [text_of(s) for s in samples]
    words = Counter(first_word(t) for t in texts)
    found = [float(s["answer_found"]) for s in samples if isinstance(s.get("answer_found"), (int, float))]
    n = len(texts)
    return Behaviour(
        samples=n,
        step_structured=sum(map(step_structured, texts)) / n,
        repetition=sum(map(repetition, texts)) / n,
        answer_found=sum(found) / len(found) if found else None,
        first_word_entropy=entropy_bits(words),
        top_first_words=[(word, count / n) for word, count in words.most_common(5)],
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
                rows.append([run.label, column, 0, "", "", "", "", "no samples logged (--log_samples)"])
                continue
            found = "" if b.answer_found is None else f"{b.answer_found:.3f}"
            rows.append([run.label, column, b.samples, f"{b.step_structured:.0%}", f"{b.repetition:.3f}", found,
                         f"{b.first_word_entropy:.2f}", b.top_words_text()])  # fmt: skip
    headers = ["run", "task", "samples", "step-structured", "repetition (4-grams)", "answer found",
               "first-word entropy (bits)", "top first words"]  # fmt: skip
    legend = (
        f"step-structured: >= {STEP_LINES} non-empty lines or a numbered/sequenced step before the final answer; "
        f"repetition: share of repeated word {NGRAM}-grams; first-word entropy: over documents (lower = sharper)"
    )
    return tabulate(rows, headers=headers, disable_numparse=True) + "\n" + legend + "\n"
