"""Selection splits for choosing hyper-parameters: a seeded dev slice disjoint from the reported test documents and
from the extraction prompts, the held-out rest of a test split that had to lend that slice, and the reference's
head of a split (its first rows, in file order).

Data sets with a train split draw the dev slice from it (minus the questions a MasterKey was extracted from); data
sets with a test split only (MATH-500, AGIEval) draw it from test, and the reported evaluation then uses the
`heldout` role: the same test split without the slice. Both roles compute the slice the same way (same eligible
rows, same seed), so they never overlap.

The `head` role is what the paper's grid searches score (`unlock-eval sweep --select-on train_head`): the first
`size` rows of a split as the loader gives them (file order, no shuffling), refused rather than trimmed when the
split is shorter or when any of those rows is among the extraction prompts.
"""

from __future__ import annotations

import random
from typing import Any

from unlock_eval.errors import ConfigError

ROLES = ("dev", "heldout", "head")
TEXT_FIELDS = ("question", "problem")  # where extraction prompts come from (GSM8K, MATH, a JSONL of one's own)


def _is_prompt(row: dict[str, Any], exclude: set[str]) -> bool:
    """Whether a document's question is one of `exclude` (AGIEval: the question inside its zero-shot `query`, as the
    test-split extraction sets read it)."""
    if any(row.get(f) in exclude for f in TEXT_FIELDS):
        return True
    query = row.get("query")
    if isinstance(query, str) and exclude:
        from unlock_eval.data.benchmarks import agieval_question

        try:
            return agieval_question(query) in exclude
        except ConfigError:
            return False
    return False


def dev_indices(rows: list[dict[str, Any]], size: int, seed: int, exclude: set[str]) -> list[int]:
    """Row indices of the dev slice: a seeded sample of `size` rows whose question is not in `exclude`, in row
    order."""
    eligible = [i for i, row in enumerate(rows) if not _is_prompt(row, exclude)]
    if size < 1:
        raise ConfigError(f"dev size must be >= 1, got {size}")
    return sorted(random.Random(seed).sample(eligible, min(size, len(eligible))))


def head_indices(
    rows: list[dict[str, Any]], size: int, exclude: set[str], source: str = "the split", extraction: str = ""
) -> list[int]:
    """Row indices of the head: the first `size` rows, all of them; a split with fewer rows, or a head that shares
    a question with `exclude` (the extraction prompts, described by `extraction`), is refused in one line."""
    if size < 1:
        raise ConfigError(f"head size must be >= 1, got {size}")
    if len(rows) < size:
        raise ConfigError(f"the first {size} rows of {source} were asked for, but it has only {len(rows)} rows")
    shared = [i for i in range(size) if _is_prompt(rows[i], exclude)]
    if shared:
        raise ConfigError(
            f"{len(shared)} of the first {size} rows of {source} ({len(rows)} rows; the first shared is row "
            f"{shared[0]}) are among {extraction or 'the extraction prompts'}: selection rows must not be "
            "extraction prompts; lower --dev-size or n"
        )
    return list(range(size))


def select_documents(
    dataset,
    role: str,
    source: str,
    size: int,
    seed: int | None = None,
    extract_from: str | None = None,
    n: int | None = None,
):
    """A DatasetDict with the selection split applied. `role="dev"`: a new split `dev`, `size` rows of split
    `source` (seeded), none of them among the last `n` questions of `extract_from`. `role="heldout"`: split
    `test` without the rows `dev` would take from it (`source` must then be `test`). `role="head"`: a new split
    `head`, the first `size` rows of `source` in order, refused if any is among those questions or `source` is
    shorter (never trimmed)."""
    import datasets

    if role not in ROLES:
        raise ConfigError(f"unlock_select role={role!r}: allowed {', '.join(ROLES)}")
    if source not in dataset:
        raise ConfigError(f"unlock_select source={source!r}: the data set has splits {', '.join(dataset)}")
    if role == "heldout" and source != "test":
        raise ConfigError("unlock_select role=heldout applies to a dev slice taken from test (source=test)")
    if role != "head" and seed is None:
        raise ConfigError(f"unlock_select role={role}: a seed is required")
    exclude: set[str] = set()
    if extract_from is not None and n is not None:
        from unlock_eval.data.prompts import load_questions

        exclude = set(load_questions(extract_from, int(n)))
    rows = dataset[source]
    out = dict(dataset)
    if role == "head":
        where = f"the n={n} extraction prompts (the last {n} of {extract_from})"
        chosen = head_indices([dict(r) for r in rows], int(size), exclude, f"the {source} split", where)
        out["head"] = rows.select(chosen)
        return datasets.DatasetDict(out)
    chosen = dev_indices([dict(r) for r in rows], int(size), int(seed), exclude)
    if role == "dev":
        out["dev"] = rows.select(chosen)
    else:
        taken = set(chosen)
        out["test"] = rows.select([i for i in range(len(rows)) if i not in taken])
    return datasets.DatasetDict(out)
