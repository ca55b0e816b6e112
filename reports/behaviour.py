"""What steering changed in the output, from lm-eval sample logs (`--log_samples`): step-by-step structure,
degenerate output, repetition, answer-found rate, and the distribution of the first generated word (its entropy and
top words: the paper's "sharpening"). Lengths are the table's own column (reports.table).

A step is a line or sentence before the final answer that carries an arithmetic operation or a quantity from the
question; a degenerate output is a counting run, a template line repeated with a changing index or name, mostly
near-identical lines, or a body that never mentions the question. Small named rules and thresholds, no model."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

# where the final answer starts: our tasks' answer format, GSM8K's "####", a boxed answer, "Final Answer:"
ANSWER_START = re.compile(r"the final answer is|<atok>|####|\\boxed|final answer\s*:", re.IGNORECASE)
# an arithmetic operation: "3 + 4", "12 / 3", "2 x 5", "4 × 2", "= 7", LaTeX operators, or an operation word
OPERATION = re.compile(
    r"[\d)]\s*[-+*/×÷x^]\s*[\d($]|[^\s=<>!]\s*=\s*[^\s=]|\\(?:frac|times|cdot|div|sqrt)\b"
    r"|\b(?:plus|minus|times|divided by|multiplied by|multiply|add|adds|added|subtract|subtracts|subtracted"
    r"|sum of|product of|difference|twice|double|half of|percent of)\b",
    re.IGNORECASE,
)
NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
NUMBER_WORDS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten eleven "
                                                 "twelve".split())}  # fmt: skip
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9$\\(])")
# not judged for degeneration: Asymptote figures, and LaTeX table/align rows (their repeated form is the notation's)
FIGURE = re.compile(r"\[asy\].*?\[/asy\]", re.DOTALL)
LATEX_ROW = re.compile(r"&|\\\\\s*(?:\\hline)?\s*$")
MIN_STEPS = 2  # step-structured: at least this many steps before the final answer
# degeneration thresholds
COUNT_RUN = 3  # a counting run: this many consecutive integers as lines or list items ("1\n2\n3", "Friend 1:" ...)
TEMPLATE_RUN = 3  # a template run: this many consecutive lines, no operation in them, equal once indices are masked
NEAR_MIN_LINES = 4  # near-identical lines: judged on outputs with at least this many lines,
NEAR_RATIO = 0.9  # a line is near-identical to another at this difflib similarity (digits masked),
NEAR_SHARE = 0.5  # and the output is degenerate when at least this share of its lines are
OFF_TOPIC_MIN_WORDS = 8  # off-topic: a body of at least this many words mentioning no entity of the question
DEGENERATE_REASONS = ("counting run", "template lines", "near-identical lines", "off-topic")
# an item that is only an index: "3", "3.", "Friend 3:", "Day 3" (an optional label word, a number, punctuation)
INDEX_ITEM = re.compile(r"^\W*(?:[^\W\d_]+\s*)?(\d{1,4})\W*$")
# what a template masks: numbers, and capitalised words or single letters (names, "Friend A")
TEMPLATE_SLOT = re.compile(r"\d+(?:[.,]\d+)*|\b[A-Z][^\W\d_]*\b|\b[^\W\d_]\b")
STOP_WORDS = set(
    "the and for with that this are was were will would have has had does did how many much what which who whom "
    "each every there their they them she her his him its into from than then more less also only after before "
    "some all any other another about over under when where while your you our out per can could should been being "
    "not but one two three four five six seven eight nine ten twice half total find give get gets got".split()
)
STEPS_LEGEND = (
    f"step-structured: >= {MIN_STEPS} steps (a line or sentence with an arithmetic operation or a quantity from the "
    "question) before the final answer, and not degenerate"
)
DEGENERATE_LEGEND = (
    f"degenerate: a counting run (>= {COUNT_RUN} consecutive integers as lines or items), >= {TEMPLATE_RUN} lines "
    f"of one template with a changing index or name, >= {NEAR_SHARE:.0%} near-identical lines, or a body that never "
    "mentions the question's names, items or numbers"
)
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


def _body(text: str) -> str:
    """The text before the final answer."""
    match = ANSWER_START.search(text)
    return text[: match.start()] if match else text


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _number(text: str) -> str:
    text = text.replace(",", "")
    return text.rstrip("0").rstrip(".") if "." in text else text


def quantities(text: str) -> set[str]:
    """The numbers of a text, normalised ("1,000" -> "1000", "2.50" -> "2.5"), with number words up to twelve."""
    found = {_number(n) for n in NUMBER.findall(text)}
    return found | {NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in NUMBER_WORDS}


def is_step(segment: str, question_quantities: set[str]) -> bool:
    """A step carries an arithmetic operation or a quantity that occurs in the question."""
    return bool(OPERATION.search(segment)) or bool(quantities(segment) & question_quantities)


def steps(text: str, question: str = "") -> int:
    """The steps (lines, or sentences within a line) before the final answer."""
    given = quantities(question)
    segments = [part for line in _lines(_body(text)) for part in SENTENCE_END.split(line) if part.strip()]
    return sum(is_step(segment, given) for segment in segments)


def step_structured(text: str, question: str = "") -> bool:
    """At least MIN_STEPS steps before the final answer, in an output that is not degenerate."""
    return steps(text, question) >= MIN_STEPS and not degenerate(text, question)


def _counting_run(text: str) -> bool:
    """COUNT_RUN consecutive integers as consecutive lines or list items: "1\n2\n3", "Friend 1:\nFriend 2:" ..."""
    run, previous = 0, None
    items = (
        part.strip()
        for line in text.splitlines()
        for part in (re.split(r"[,;]", line) if "$" not in line and "\\" not in line else [line])
    )  # list items, except inside math (a set {0,1,2,3} is content)
    for item in items:
        if not item:
            continue
        match = INDEX_ITEM.match(item)
        index = int(match.group(1)) if match else None
        run = run + 1 if index is not None and previous is not None and index == previous + 1 else 1
        previous = index
        if index is not None and run >= COUNT_RUN:
            return True
    return False


def _template_run(lines: list[str]) -> bool:
    """TEMPLATE_RUN consecutive lines without an operation that are equal once numbers and names are masked
    ("Friend A: 6 stickers", "Friend B: 4 stickers", ...)."""
    run, previous = 0, None
    for line in lines:
        mask = None if OPERATION.search(line) else TEMPLATE_SLOT.sub("#", line)
        run = run + 1 if mask is not None and mask == previous else 1
        previous = mask
        if mask is not None and run >= TEMPLATE_RUN:
            return True
    return False


def _near_identical(lines: list[str]) -> bool:
    """At least NEAR_SHARE of the lines (of NEAR_MIN_LINES or more) have a twin: a line without an operation is
    twinned by one at NEAR_RATIO similarity once digits are masked; a line with an operation only by an equal one
    (parallel computations with different numbers are reasoning, the same computation again is not)."""
    if len(lines) < NEAR_MIN_LINES:
        return False
    keys = [" ".join(line.lower().split()) for line in lines]
    fuzzy = [not OPERATION.search(line) for line in lines]
    keys = [re.sub(r"\d+", "#", key) if loose else key for key, loose in zip(keys, fuzzy)]
    twin = [False] * len(keys)
    for i, a in enumerate(keys):
        for j in range(i + 1, len(keys)):
            if (twin[i] and twin[j]) or fuzzy[i] != fuzzy[j]:
                continue
            if a == keys[j]:
                twin[i] = twin[j] = True
            elif fuzzy[i]:
                matcher = SequenceMatcher(None, a, keys[j], autojunk=False)
                bounds = (matcher.real_quick_ratio, matcher.quick_ratio, matcher.ratio)  # cheap bounds first
                if all(bound() >= NEAR_RATIO for bound in bounds):
                    twin[i] = twin[j] = True
    return sum(twin) >= NEAR_SHARE * len(lines)


def _stem(word: str) -> str:
    word = word.lower()
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def entities(question: str) -> set[str]:
    """What a question is about: its content words (stemmed, no stop words) and its quantities."""
    words = {_stem(w) for w in re.findall(r"[^\W\d_]{3,}", question)}
    return {w for w in words if w not in STOP_WORDS} | quantities(question)


def _off_topic(text: str, question: str) -> bool:
    """A body of OFF_TOPIC_MIN_WORDS or more words that mentions none of the question's entities."""
    about = entities(question)
    body = _body(text)
    if not about or len(re.findall(r"\w+", body)) < OFF_TOPIC_MIN_WORDS:
        return False
    said = {_stem(w) for w in re.findall(r"[^\W\d_]{3,}", body)} | quantities(body)
    return not about & said


def degenerate(text: str, question: str = "") -> str | None:
    """Why an output is degenerate (one of DEGENERATE_REASONS), or None: a counting run, a template line repeated
    with a changing index or name, mostly near-identical lines, or a body that never mentions the question's
    entities (names, items, numbers; judged only when the question is known)."""
    text = FIGURE.sub("\n", text)
    lines = [line for line in _lines(text) if not LATEX_ROW.search(line)]
    if _counting_run(text):
        return "counting run"
    if _template_run(lines):
        return "template lines"
    if _near_identical(lines):
        return "near-identical lines"
    if question and _off_topic(text, question):
        return "off-topic"
    return None


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
