"""`arith`: one- and two-step arithmetic word problems with small numbers (two thirds one-step, operands under 10)
from a seeded generator, in GSM8K's format (question, and an answer whose rationale ends in `#### N`): a task the
embedded models are off the floor on, for the offline demo.

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
    a, b = rng.randrange(2, 10), rng.randrange(1, 6)
    kind = rng.randrange(4)
    if kind == 0:
        return (f"{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?",
                f"{name} has {a} + {b} = {a + b} {item}.", a + b)  # fmt: skip
    if kind == 1:
        a += b
        return (f"{name} has {a} {item} and gives away {b} of them. How many {item} does {name} have left?",
                f"{name} has {a} - {b} = {a - b} {item} left.", a - b)  # fmt: skip
    if kind == 2:
        a, b = rng.randrange(2, 6), rng.randrange(2, 5)
        return (f"{name} has {b} boxes with {a} {item} in each box. How many {item} does {name} have in all?",
                f"{name} has {b} * {a} = {a * b} {item}.", a * b)  # fmt: skip
    a, b = rng.randrange(2, 6), rng.randrange(2, 5)
    return (f"{name} shares {a * b} {item} equally among {b} friends. How many {item} does each friend get?",
            f"Each friend gets {a * b} / {b} = {a} {item}.", a)  # fmt: skip


def _two_step(rng: random.Random) -> tuple[str, str, int]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randrange(3, 10), rng.randrange(2, 5), rng.randrange(2, 5)
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
