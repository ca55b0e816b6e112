"""Tiny saved models, an extraction JSONL and tiny local lm-eval tasks for the adapter tests."""

from __future__ import annotations

import json
from pathlib import Path

from tiny_models import char_tokenizer, tiny_model

QUESTIONS = [
    "what is one plus two",
    "how many legs has a cat",
    "is ten more than five",
    "name a red fruit",
    "what is six times seven",
    "how old is the sun",
    "why is the sky blue",
    "count to four",
    "what comes after b",
    "spell cat backwards",
]


def save_tiny(path: Path, arch: str, layers: int, d: int, seed: int) -> str:
    model, tok = tiny_model(arch, layers=layers, d=d, seed=seed), char_tokenizer()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def write_questions(path: Path) -> str:
    path.write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    return str(path)


def write_tasks(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "docs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": q, "answer": "4", "choices": ["yes", "no"], "label": 0}) + "\n"
            for q in QUESTIONS[:4]
        )
    )
    (folder / "tiny_gen.yaml").write_text(f"""task: tiny_unlock_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n\\n"]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
""")
    (folder / "tiny_mc.yaml").write_text(f"""task: tiny_unlock_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
""")
    return str(folder)
