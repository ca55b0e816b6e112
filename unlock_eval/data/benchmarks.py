"""Benchmark data (GSM8K, MATH, MATH-500, AGIEval Math, SAT-Math): the Hub data sets upstream lm-eval uses, or
local JSONL files in the upstream layouts under $UNLOCK_EVAL_DATA_DIR, converted to the Hub schema; and `arith`,
generated in the repository (unlock_eval.data.arith).

One reading of the variable for the tasks and the extraction prompts alike: unset or empty means the Hub; a
folder means local files only (a missing file is an error naming the path and the variable, never a fallback).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from unlock_eval.errors import ConfigError

DATA_DIR_ENV = "UNLOCK_EVAL_DATA_DIR"

#: Hub data set (path, config name) per benchmark: the ones lm-eval 0.4.13's own tasks use
#: (gsm8k.yaml, hendrycks_math_*.yaml, hendrycks_math500.yaml, agieval/math.yaml, agieval/sat-math.yaml).
#: MATH's config is the subject, e.g. ("EleutherAI/hendrycks_math", "algebra").
HUB = {
    "gsm8k": ("openai/gsm8k", "main"),
    "math": ("EleutherAI/hendrycks_math", None),
    "math500": ("HuggingFaceH4/MATH-500", "default"),
    "agieval_math": ("hails/agieval-math", None),
    "agieval_sat_math": ("hails/agieval-sat-math", None),
}

#: Local files per benchmark and split, relative to $UNLOCK_EVAL_DATA_DIR (upstream layouts).
LOCAL_FILES = {
    "gsm8k": {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
    "math": {"train": "math/train.jsonl", "test": "math/test.jsonl"},
    "math500": {"test": "math/math500.jsonl"},
    "agieval_math": {"test": "agieval/math.jsonl"},
    "agieval_sat_math": {"test": "agieval/sat-math.jsonl"},
}

#: Benchmarks generated in the repository (no Hub, no local files): name -> splits (unlock_eval.data.arith).
GENERATED = {"arith": ("train", "test")}

#: MATH subjects: Hub config name == folder in the original tar layout == unique_id's middle part.
MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)


def data_dir() -> Path | None:
    """The local data directory from $UNLOCK_EVAL_DATA_DIR, or None (unset or empty: use the Hub)."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"{DATA_DIR_ENV}={value!r} is not a directory. Point it at a folder laid out as in "
            f"tasks/README.md (gsm8k/test.jsonl, math/test.jsonl, ...), or unset it to load from the Hub."
        )
    return path


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a JSONL file (blank lines skipped); a bad line is an error naming the file and line."""
    path = Path(path)
    return [dict(row) for row in _read_jsonl(str(path), path.stat().st_mtime_ns)]


@lru_cache(maxsize=16)
def _read_jsonl(path: str, mtime_ns: int) -> tuple[dict[str, Any], ...]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ConfigError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
    return tuple(rows)


def read_local(benchmark: str, split: str) -> list[dict[str, Any]]:
    """Rows of the local JSONL file for ``benchmark``/``split`` (raises if the file is missing)."""
    root = data_dir()
    if root is None:
        raise ConfigError(f"read_local: {DATA_DIR_ENV} is not set")
    path = root / LOCAL_FILES[benchmark][split]
    if not path.is_file():
        raise ConfigError(
            f"{benchmark}: local data file {path} not found ({DATA_DIR_ENV}={os.environ[DATA_DIR_ENV]!r}; "
            f"expected layout: {', '.join(LOCAL_FILES[benchmark].values())} under that directory, see "
            f"tasks/README.md). Unset {DATA_DIR_ENV} to load {HUB[benchmark][0]} from the Hugging Face Hub."
        )
    return read_jsonl(path)


def _agieval_zero_shot_query(row: dict[str, Any], multiple_choice: bool) -> str:
    """AGIEval's own zero-shot prompt (``convert_zero_shot`` in its src/dataset_loader.py), which is
    the ``query`` field of the hails/agieval-* Hub data sets ("processed as in that repo")."""
    passage = row.get("passage") or ""
    if not multiple_choice:
        return passage + "Q: " + row["question"] + "\nA: The answer is"
    letters = "ABCDEFG"
    count = len(row["options"])
    last = letters[(5 if count == 1 else count) - 1]
    return (
        passage + "Q: " + row["question"] + " " + "Answer Choices: " + " ".join(row["options"]) + "\n"
        f"A: Among A through {last}, the answer is"
    )


_AGIEVAL_ANSWER_LINE = re.compile(r"\nA: (?:The answer is|Among A through [A-G], the answer is)\Z")


def agieval_question(query: str) -> str:
    """The question inside an AGIEval zero-shot ``query``: without the 'Q: ' marker and the final
    'A: ...' line; a passage (SAT tables) stays in front, on its own line."""
    m = _AGIEVAL_ANSWER_LINE.search(query)
    passage, marker, rest = query[: m.start() if m else len(query)].partition("Q: ")
    if m is None or not marker:
        raise ConfigError(f"not an AGIEval zero-shot query (expected 'Q: ...\\nA: ...'): {query[-120:]!r}")
    return f"{passage.strip()}\n{rest}" if passage.strip() else rest


def _to_hub_schema(benchmark: str, row: dict[str, Any]) -> dict[str, Any]:
    """One local (upstream-layout) row in the schema of the Hub data set lm-eval loads."""
    if benchmark == "math":  # EleutherAI/hendrycks_math: problem, level, type, solution
        return {key: row[key] for key in ("problem", "level", "type", "solution")}
    if benchmark == "agieval_math":  # hails/agieval-math: query, answer
        return {"query": _agieval_zero_shot_query(row, False), "answer": row["answer"]}
    if benchmark == "agieval_sat_math":  # hails/agieval-sat-math: query, choices, gold (list of int)
        return {
            "query": _agieval_zero_shot_query(row, True),
            "choices": list(row["options"]),
            "gold": ["ABCDEFG".index(row["label"])],
        }
    return row  # gsm8k, math500: the local files already have the Hub's fields


def _from_hub(benchmark: str, config_name: str | None, split: str | None = None):
    """`datasets.load_dataset` of the benchmark's Hub data set; failing that (offline, gated, renamed), one error
    that names the data set and the variable that points at local files instead."""
    import datasets

    path = HUB[benchmark][0]
    try:
        return datasets.load_dataset(path, config_name, split=split)
    except OSError as exc:  # offline, connection, not found, gated: all OSErrors in datasets/huggingface_hub
        where = f"{path} ({config_name})" if config_name else path
        files = ", ".join(LOCAL_FILES[benchmark].values())
        raise ConfigError(
            f"cannot load {where} from the Hugging Face Hub ({type(exc).__name__}: {exc}). Offline, set "
            f"{DATA_DIR_ENV} to a folder holding {files} (layout: tasks/README.md)"
        ) from None


def _generated(benchmark: str, split: str) -> list[dict[str, Any]]:
    from unlock_eval.data import arith

    return arith.rows(split)


def _check_benchmark(benchmark: str, subject: str | None) -> None:
    if benchmark not in HUB and benchmark not in GENERATED:
        raise ConfigError(f"unknown benchmark {benchmark!r}; valid: {', '.join([*HUB, *GENERATED])}")
    if subject is not None and subject not in MATH_SUBJECTS:
        raise ConfigError(f"unknown MATH subject {subject!r}; valid: {', '.join(MATH_SUBJECTS)}")


def load_split(benchmark: str, split: str) -> list[dict[str, Any]]:
    """Every row of one split (MATH: all subjects, in subject order), in the Hub schema, from
    $UNLOCK_EVAL_DATA_DIR or the Hub: what MasterKeys are extracted from."""
    _check_benchmark(benchmark, None)
    if benchmark in GENERATED:
        if split not in GENERATED[benchmark]:
            raise ConfigError(f"{benchmark} has no {split!r} split; it has {', '.join(GENERATED[benchmark])}")
        return _generated(benchmark, split)
    if split not in LOCAL_FILES[benchmark]:
        raise ConfigError(f"{benchmark} has no {split!r} split; it has {', '.join(LOCAL_FILES[benchmark])}")
    if data_dir() is not None:
        return [_to_hub_schema(benchmark, row) for row in read_local(benchmark, split)]
    if benchmark == "math":
        return [dict(row) for subject in MATH_SUBJECTS for row in _from_hub("math", subject, split)]
    return [dict(row) for row in _from_hub(benchmark, HUB[benchmark][1], split)]


def load_benchmark(benchmark: str, subject: str | None = None):
    """DatasetDict for ``benchmark`` (a key of HUB), from $UNLOCK_EVAL_DATA_DIR or the Hub; MATH needs a subject."""
    import datasets

    _check_benchmark(benchmark, subject)
    if (benchmark == "math") != (subject is not None):
        raise ConfigError("load_benchmark: subject is required for 'math' and only for it")
    if benchmark in GENERATED:
        return datasets.DatasetDict(
            {split: datasets.Dataset.from_list(_generated(benchmark, split)) for split in GENERATED[benchmark]}
        )
    root = data_dir()
    if root is None:
        return _from_hub(benchmark, subject if benchmark == "math" else HUB[benchmark][1])
    splits = {}
    for split in LOCAL_FILES[benchmark]:
        rows = read_local(benchmark, split)
        if subject is not None:
            rows = [row for row in rows if row.get("unique_id", "").split("/")[1:2] == [subject]]
        splits[split] = datasets.Dataset.from_list([_to_hub_schema(benchmark, row) for row in rows])
    return datasets.DatasetDict(splits)
