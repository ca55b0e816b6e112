"""Selection splits for choosing hyper-parameters honestly: a seeded dev slice disjoint from the reported test
documents and from the extraction prompts, and the held-out rest of a test split that had to lend that slice.

Data sets with a train split draw the dev slice from it (minus the questions a MasterKey was extracted from); data
sets with a test split only (MATH-500, AGIEval) draw it from test, and the reported evaluation then uses the
`heldout` role: the same test split without the slice. Both roles compute the slice the same way (same eligible
rows, same seed), so they never overlap.
"""

from __future__ import annotations

import random
from typing import Any

from unlock_eval.errors import ConfigError

ROLES = ("dev", "heldout")
TEXT_FIELDS = ("question", "problem")  # where extraction prompts come from (GSM8K, MATH, a JSONL of one's own)


def dev_indices(rows: list[dict[str, Any]], size: int, seed: int, exclude: set[str]) -> list[int]:
    """Row indices of the dev slice: a seeded sample of `size` rows whose question is not in `exclude`, in row
    order."""
    eligible = [i for i, row in enumerate(rows) if not any(row.get(f) in exclude for f in TEXT_FIELDS)]
    if size < 1:
        raise ConfigError(f"dev size must be >= 1, got {size}")
    return sorted(random.Random(seed).sample(eligible, min(size, len(eligible))))


def select_documents(
    dataset,
    role: str,
    source: str,
    size: int,
    seed: int,
    extract_from: str | None = None,
    n: int | None = None,
):
    """A DatasetDict with the selection split applied. `role="dev"`: a new split `dev`, `size` rows of split
    `source` (seeded), none of them among the last `n` questions of `extract_from`. `role="heldout"`: split
    `test` without the rows `dev` would take from it (`source` must then be `test`)."""
    import datasets

    if role not in ROLES:
        raise ConfigError(f"unlock_select role={role!r}: allowed {', '.join(ROLES)}")
    if source not in dataset:
        raise ConfigError(f"unlock_select source={source!r}: the data set has splits {', '.join(dataset)}")
    if role == "heldout" and source != "test":
        raise ConfigError("unlock_select role=heldout applies to a dev slice taken from test (source=test)")
    exclude: set[str] = set()
    if extract_from is not None and n is not None:
        from unlock_eval.data.prompts import load_questions

        exclude = set(load_questions(extract_from, int(n)))
    rows = dataset[source]
    chosen = dev_indices([dict(r) for r in rows], int(size), int(seed), exclude)
    out = dict(dataset)
    if role == "dev":
        out["dev"] = rows.select(chosen)
    else:
        taken = set(chosen)
        out["test"] = rows.select([i for i in range(len(rows)) if i not in taken])
    return datasets.DatasetDict(out)
