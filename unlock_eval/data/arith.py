"""`arith`: one- and two-step arithmetic word problems (two thirds one-step) from a seeded generator, in GSM8K's
format (question, and an answer whose rationale ends in `#### N`): the offline demo's task.

Fair by design: a lucky hit is rare. Every answer lies between 10 and about 100, some 80 distinct values per split,
none more common than about 4%; under 2% of the pairs of test problems share their answer, which bounds how often
an answer taken from unrelated text (the last number of a list, of a restated question) matches the gold. No answer
is one of the numbers in its question, so echoing the question never scores. The steps are the easiest that allow
this spread: one step adds or takes away 1, 2 or 10 from a two-digit number, or doubles or halves one; two steps add
a product of two single digits to, or take a sum of two single digits from, a two-digit number. (The first design,
operands under 10, had 24 answers from 2 to 25, 6% of test pairs alike: the target's lenient accuracy was chance.)
What the embedded target scores on it, and the chance level measured: `docs/tasks.md`.

Deterministic: the same rows on every machine and every call (Python's `random.Random(seed)` is stable across
versions for `randrange`/`choice` on the same inputs). Train (extraction prompts) and test (scoring) come from
different seeds and share no question: a test question that the train generator also produced is dropped.
"""

from __future__ import annotations

import random
from functools import cache

SIZES = {"train": 400, "test": 300}
SEEDS = {"train": 1001, "test": 2002}
NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena", "Milo", "Nia"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "shells", "cards", "stamps", "beads"]


def _one_step(rng: random.Random) -> tuple[str, str, int]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randrange(12, 90), rng.choice([1, 2, 10])
        return (f"{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?",
                f"{name} has {a} + {b} = {a + b} {item}.", a + b)  # fmt: skip
    if kind == 1:
        left, b = rng.randrange(10, 90), rng.choice([1, 2, 10])
        a = left + b
        return (f"{name} has {a} {item} and gives away {b} of them. How many {item} does {name} have left?",
                f"{name} has {a} - {b} = {a - b} {item} left.", a - b)  # fmt: skip
    if kind == 2:
        a, b = rng.randrange(11, 50), 2
        return (f"{name} has {b} boxes with {a} {item} in each box. How many {item} does {name} have in all?",
                f"{name} has {b} * {a} = {a * b} {item}.", a * b)  # fmt: skip
    a, b = rng.randrange(11, 50), 2
    return (f"{name} shares {a * b} {item} equally among {b} friends. How many {item} does each friend get?",
            f"Each friend gets {a * b} / {b} = {a} {item}.", a)  # fmt: skip


def _two_step(rng: random.Random) -> tuple[str, str, int]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randrange(10, 60), rng.randrange(2, 6), rng.randrange(3, 10)
    kind = rng.randrange(3)
    if kind == 0:
        return (f"{name} has {a} {item}. {name} buys {b} packs with {c} {item} in each pack. "
                f"How many {item} does {name} have now?",
                f"The packs hold {b} * {c} = {b * c} {item}. {name} has {a} + {b * c} = {a + b * c} {item}.",
                a + b * c)  # fmt: skip
    if kind == 1:
        a += b + c
        return (f"{name} has {a} {item}. {name} gives {b} to one friend and {c} to another. "
                f"How many {item} does {name} have left?",
                f"{name} gives away {b} + {c} = {b + c} {item}. {a} - {b + c} = {a - b - c} {item} are left.",
                a - b - c)  # fmt: skip
    return (f"{name} has {b} bags with {c} {item} in each bag and finds {a} more {item}. "
            f"How many {item} does {name} have?",
            f"The bags hold {b} * {c} = {b * c} {item}. {b * c} + {a} = {b * c + a} {item}.", b * c + a)  # fmt: skip


def _generate(seed: int, count: int, exclude: frozenset[str] = frozenset()) -> list[dict[str, str]]:
    rng, rows, seen = random.Random(seed), [], set(exclude)
    while len(rows) < count:
        question, rationale, answer = (_one_step if rng.random() < 2 / 3 else _two_step)(rng)
        if question in seen:
            continue
        seen.add(question)
        rows.append({"question": question, "answer": f"{rationale}\n#### {answer}"})
    return rows


@cache
def _splits() -> dict[str, tuple[dict[str, str], ...]]:
    train = _generate(SEEDS["train"], SIZES["train"])
    test = _generate(SEEDS["test"], SIZES["test"], frozenset(row["question"] for row in train))
    return {"train": tuple(train), "test": tuple(test)}


def rows(split: str) -> list[dict[str, str]]:
    """The rows of `train` or `test` (fresh dicts: callers may change them)."""
    return [dict(row) for row in _splits()[split]]
