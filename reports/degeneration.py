"""What one generated text shows: its reasoning steps and whether it degenerated (reports.behaviour counts them).

A step is a line or sentence before the final answer that carries an arithmetic operation or a quantity from the
question; a degenerate output is a counting run, a template line repeated with a changing index or name, mostly
near-identical lines, or a body that never mentions the question. Small named rules and thresholds, no model."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

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
