"""Capability templates (locked/unlocked prompt pairs) and the unlabeled questions MasterKeys are extracted from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from unlock_eval.data import benchmarks as data
from unlock_eval.errors import ConfigError

# The official code of the paper: rishabbala/Steering-Vector-Transfer at this commit, utils.py PROMPT_TEMPLATES.
REFERENCE_CODE = "rishabbala/Steering-Vector-Transfer@9988ad7ff68ce37edd91cb728d13da73b07223ff utils.py"


@dataclass(frozen=True)
class Capability:
    """A prompt-induced capability: one model under two templates with a `{question}` slot. Both templates end on
    the same token (a newline), so the MasterKey compares the same position type; the locked one is also the
    evaluation prompt. `origin` says where the text comes from."""

    locked_template: str
    unlocked_template: str
    origin: str


CAPABILITIES: dict[str, Capability] = {
    # The paper's CoT pair (sh/CoT_*.sh: --prompt_type "general-direct,general-cot"), byte for byte; the reference
    # writes the slot as {input}. Generations end with "The final answer is <atok> X </atok>." (checker rule atok).
    "cot": Capability(
        locked_template=(
            "Solve the following question and place the answer at the end. Your response should always end with "
            '"The final answer is <atok> [answer] </atok>." where [answer] is the correct solution to the problem.'
            "\n\nQuestion:\n{question}\n\nAnswer:\n"
        ),
        unlocked_template=(
            "Reason step by step and give a final answer to the following question. Your response should always end "
            'with "The final answer is <atok> [answer] </atok>." where [answer] is the correct solution to the '
            "problem.\n\nQuestion:\n{question}\n\nAnswer: Let's think step by step.\n"
        ),
        origin=f"{REFERENCE_CODE}: PROMPT_TEMPLATES['general-direct'] (locked), ['general-cot'] (unlocked)",
    ),
    # The upstream-lm-eval-style pair unlock-eval used first, now ending both templates on a newline (the old
    # "Answer:" vs "step by step." endings made the key learn the final token's identity).
    "cot_qa": Capability(
        locked_template="Question: {question}\nAnswer:\n",
        unlocked_template="Question: {question}\nAnswer: Let's think step by step.\n",
        origin="unlock-eval: upstream lm-eval style 'Question: ...\\nAnswer:' with the zero-shot CoT trigger",
    ),
}
DEFAULT_CAPABILITY = "cot"

# Named extraction sets: (benchmark of unlock_eval.data.benchmarks, split, text field). The reference takes the
# last n rows of the steering data set's train split.
EXTRACTION_SETS: dict[str, tuple[str, str, str]] = {
    "gsm8k": ("gsm8k", "train", "question"),
    "math": ("math", "train", "problem"),
    "arith": ("arith", "train", "question"),  # generated in the repository: offline without any data
    # Opt-in only: the reference's fallback for data sets without a train split, the last n rows of the *test* split
    # (the documents the tasks then score: a leak, flagged in the results record and the report). "query": the
    # question inside AGIEval's zero-shot prompt, as the tasks show it.
    "agieval_math_test": ("agieval_math", "test", "query"),
    "agieval_sat_math_test": ("agieval_sat_math", "test", "query"),
    "math500_test": ("math500", "test", "problem"),
}
# the tasks each test-tail set overlaps (task-name patterns, as TASK_FAMILIES)
TEST_TAIL_TASKS = {
    "agieval_math_test": r"agieval_math(_|$)",
    "agieval_sat_math_test": r"agieval_sat_math",
    "math500_test": r"math500(_|$)",
}
DEFAULT_EXTRACT_FROM = "gsm8k"
# Task names (ours and upstream lm-eval's) -> the extraction set drawn from the same data set's train split.
TASK_FAMILIES = (
    (r"gsm8k(_|$)", "gsm8k"),
    (r"arith(_|$)", "arith"),
    (r"agieval_sat_math", None),
    (r"agieval_math(_|$)", "math"),
    (r"math(500)?(_|$)", "math"),
    (r"hendrycks_math", "math"),
    (r"minerva_math", "math"),
)
DEFAULT_N = 64
TEXT_FIELDS = ("question", "problem")


def template_label(template: str) -> str:
    """A short name for a template in progress lines: its preset and side (`cot unlocked`), else a hash."""
    import hashlib

    for name, preset in CAPABILITIES.items():
        for side in ("locked", "unlocked"):
            if getattr(preset, f"{side}_template") == template:
                return f"{name} {side} template"
    return f"template {hashlib.sha256(template.encode()).hexdigest()[:8]}"


def render(template: str, question: str) -> str:
    """Fill the `{question}` slot (plain replacement: questions may contain LaTeX braces)."""
    return template.replace("{question}", question)


def recover_question(template: str, text: str) -> str | None:
    """The question a rendered `template` was filled with (the text between its prefix and suffix), or None when
    `text` is not the template filled with one question (another format, or the template repeated: few-shot)."""
    prefix, suffix = template.split("{question}", 1)
    if not (text.startswith(prefix) and text.endswith(suffix) and len(text) >= len(prefix) + len(suffix)):
        return None
    question = text[len(prefix) : len(text) - len(suffix)]
    if (prefix.strip() and prefix.strip() in question) or (suffix.strip() and suffix.strip() in question):
        return None
    return question


def check_template(name: str, template: str) -> str:
    if not isinstance(template, str) or "{question}" not in template:
        raise ConfigError(f"{name} must be a string containing the slot '{{question}}', got {template!r}")
    return template


def check_capability(capability: str) -> str:
    if capability not in CAPABILITIES:
        raise ConfigError(
            f"capability={capability!r}: allowed values are {', '.join(CAPABILITIES)} "
            "(or give locked_template and unlocked_template)"
        )
    return capability


def check_extraction_source(extract_from: str) -> str:
    """A named set (read from the Hub, or from UNLOCK_EVAL_DATA_DIR when set) or an existing .jsonl file."""
    if extract_from in EXTRACTION_SETS:
        return extract_from
    path = Path(extract_from).expanduser()
    if path.suffix != ".jsonl":
        raise ConfigError(
            f"extract_from={extract_from!r}: allowed values are {', '.join(EXTRACTION_SETS)} "
            "or a path to a .jsonl file with a 'question' or 'problem' field"
        )
    if not path.is_file():
        raise ConfigError(f"extract_from={extract_from!r}: file not found")
    return extract_from


def load_questions(extract_from: str, n: int) -> list[str]:
    """The last `n` questions of a named train split (GSM8K or MATH, Hub or local) or of a JSONL file."""
    n = int(n)
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    check_extraction_source(extract_from)
    if extract_from in EXTRACTION_SETS:
        benchmark, split, text_field = EXTRACTION_SETS[extract_from]
        rows, fields, where = data.load_split(benchmark, split), (text_field,), f"the {benchmark} {split} split"
        if text_field == "query":  # AGIEval: the question the tasks show, out of its zero-shot prompt
            rows, fields = [{"question": data.agieval_question(row["query"])} for row in rows], ("question",)
    else:
        rows, fields, where = data.read_jsonl(Path(extract_from).expanduser()), TEXT_FIELDS, extract_from
    questions = []
    for i, row in enumerate(rows, 1):
        text = next((row[f] for f in fields if isinstance(row, dict) and isinstance(row.get(f), str)), None)
        if text is None:
            raise ConfigError(f"extract_from: row {i} of {where} has no string field {' or '.join(fields)}")
        questions.append(text)
    if len(questions) < n:
        raise ConfigError(
            f"extract_from={extract_from!r}: asked for n={n} prompts but {where} has only {len(questions)}"
        )
    return questions[-n:]


def test_overlap(extract_from: str, n: int) -> dict | None:
    """What a test-split extraction set shares with the evaluation (None for the train sets and files): the results
    record carries it and the report flags the rows."""
    if extract_from not in TEST_TAIL_TASKS:
        return None
    benchmark, split, _ = EXTRACTION_SETS[extract_from]
    return {
        "extract_from": extract_from,
        "benchmark": benchmark,
        "split": split,
        "rows": f"the last {n}",
        "tasks": TEST_TAIL_TASKS[extract_from],
        "note": f"the key was extracted from the last n={n} {split} documents of {benchmark}, which its tasks score",
    }


def extraction_mismatch(extract_from: str, task_names: set[str]) -> str | None:
    """A one-line note when the tasks come from another data set than the extraction prompts, else None.

    lm-eval builds the model before the tasks, so the key cannot follow the task: the paper's task-conditioned
    setting extracts from the task's own train split (extract_from=math for MATH-family tasks)."""
    overlap = TEST_TAIL_TASKS.get(extract_from)
    if overlap is not None:
        leaked = sorted(t for t in task_names if re.match(overlap, t))
        benchmark = EXTRACTION_SETS[extract_from][0]
        others = extraction_mismatch(benchmark, set(task_names) - set(leaked))
        others = others and others.replace(f"extract_from={benchmark},", f"extract_from={extract_from},", 1)
        if not leaked:
            return others
        return (
            f"unlock: extract_from={extract_from} takes the key's prompts from the test documents that "
            f"{', '.join(leaked[:3])}{' ...' if len(leaked) > 3 else ''} score (the reference's fallback, opted "
            "into): the results record and the report flag these rows"
            + (f"; {others[len('unlock: ') :]}" if others else "")
        )
    family = {}
    for task in sorted(task_names):
        wanted = next((s for pattern, s in TASK_FAMILIES if re.match(pattern, task)), None)
        if wanted is not None and wanted != extract_from:
            family.setdefault(wanted, []).append(task)
    if not family:
        return None
    parts = "; ".join(
        f"{', '.join(tasks[:3])}{' ...' if len(tasks) > 3 else ''} -> extract_from={wanted}"
        for wanted, tasks in family.items()
    )
    return (
        f"unlock: the key was extracted from extract_from={extract_from}, but these tasks draw from another data "
        f"set ({parts}): a task-agnostic transfer; the paper's task-conditioned setting uses the task's own set"
    )
