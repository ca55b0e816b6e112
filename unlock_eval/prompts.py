"""Capability templates (locked/unlocked prompt pairs) and the unlabeled questions MasterKeys are extracted from."""

from __future__ import annotations

from pathlib import Path

from . import data
from .errors import ConfigError

# Prompt-induced capabilities: one model, two templates with a `{question}` slot.
CAPABILITIES: dict[str, dict[str, str]] = {
    "cot": {
        "locked_template": "Question: {question}\nAnswer:",
        "unlocked_template": "Question: {question}\nAnswer: Let's think step by step.",
    },
}
DEFAULT_CAPABILITY = "cot"

# Named extraction sets: (benchmark of unlock_eval.data, split, text field). The reference takes the last n rows
# of the steering data set's train split.
EXTRACTION_SETS: dict[str, tuple[str, str, str]] = {
    "gsm8k": ("gsm8k", "train", "question"),
    "math": ("math", "train", "problem"),
}
DEFAULT_EXTRACT_FROM = "gsm8k"
DEFAULT_N = 64
TEXT_FIELDS = ("question", "problem")


def render(template: str, question: str) -> str:
    """Fill the `{question}` slot (plain replacement: questions may contain LaTeX braces)."""
    return template.replace("{question}", question)


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
