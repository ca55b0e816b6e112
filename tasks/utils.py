"""Document preparation and scoring for the unlock math tasks (GSM8K, MATH, MATH-500, AGIEval Math, SAT-Math);
the YAML files in this directory point here with ``!function utils.<name>``.

Data: every task's ``custom_dataset`` is one of the ``load_*`` functions below, thin wrappers around
``unlock_eval.data.benchmarks.load_benchmark``: the Hub data sets upstream lm-eval uses, or with
``UNLOCK_EVAL_DATA_DIR`` set the local JSONL files in the upstream layouts (tasks/README.md), converted to the Hub
schema so that ``process_*`` sees the same documents either way.

Scoring: the ``checker`` filter (``checker_filter`` / ``checker_choice_filter``) extracts the final
answer from each generation with ``unlock_eval.checker`` and judges it against ``doc["gold_answer"]``;
its output, a small dict, is what lm-eval logs as the sample's ``filtered_resps`` (answer, rule,
verdict). ``process_results`` turns that dict into the metrics:

* ``acc``             1 when the checker judges the extracted answer equal to the gold answer (lenient: any rule,
  fallbacks included);
* ``acc_strict``      ``acc`` counted only when a marker rule (``unlock_eval.checker.STRICT_RULES``) found the
  answer, not a fallback (``last_number``; ``choice`` in multiple choice);
* ``acc_reference``   1 when the answer read the way the paper's official code reads it
  (``unlock_eval.checker.extract_reference``, for the data set the document names in ``reference_dataset``,
  which ``process_*`` adds) is judged equal to the gold answer by the same checker, within the reference's 3 s
  (``REFERENCE_TIMEOUT``): it differs from ``acc`` only in how the answer is read. Documents without
  ``reference_dataset`` (a task of your own) report no ``acc_reference``;
* ``rule_<name>``     1 when rule ``<name>`` found the answer (one per ``RULES``; ``rule_choice`` for multiple
  choice): their means are each rule's share of the documents (count = share x documents);
* ``answer_found``    1 when any extraction rule found an answer (see ``unlock_eval.checker.RULES``);
* ``gen_len_pieces``  the generation's length in *pieces*: runs of letters, single digits and single
  other non-space characters. lm-eval hands ``process_results`` text only, no token ids, so this is a
  tokenizer-free count that is the same for every model (comparable across source/target models); it
  is not any model's own token count. Measured against SmolLM2's BPE tokenizer on 1000 MATH solutions
  and 1000 GSM8K rationales: tokens/pieces has median 1.0, 90% of texts between 0.89 and 1.10.

A task of your own reaches these as ``!function unlock_eval.tasks.utils.<name>`` (see tasks/README.md).
"""

from __future__ import annotations

import json
import re
from typing import Any

from unlock_eval.checker import (
    REFERENCE_TIMEOUT,
    RULES,
    STRICT_RULES,
    Extraction,
    check,
    check_choice,
    choice_letter,  # noqa: F401 - still importable from here, as before
    extract,
    extract_reference,
)
from unlock_eval.data.benchmarks import MATH_SUBJECTS, agieval_question, load_benchmark
from unlock_eval.data.prompts import CAPABILITIES, render
from unlock_eval.errors import ConfigError

# lm-eval calls custom_dataset(**metadata, **dataset_kwargs); metadata carries unrelated keys (the
# model arguments, version, ...), so these accept and ignore anything but their own keyword.


def _selected(dataset, unlock_select: dict[str, Any] | None):
    """The selection split a sweep asked for (dataset_kwargs unlock_select, see unlock_eval.data.splits), else as is."""
    if not unlock_select:
        return dataset
    from unlock_eval.data.splits import select_documents

    return select_documents(dataset, **unlock_select)


def load_gsm8k(unlock_select: dict[str, Any] | None = None, **_: Any):
    return _selected(load_benchmark("gsm8k"), unlock_select)


def load_math(unlock_subject: str | None = None, unlock_select: dict[str, Any] | None = None, **_: Any):
    if unlock_subject is None:
        raise ConfigError(
            "load_math: set dataset_kwargs: {unlock_subject: <subject>} in the task YAML; "
            f"valid subjects: {', '.join(MATH_SUBJECTS)}"
        )
    return _selected(load_benchmark("math", unlock_subject), unlock_select)


def load_arith(unlock_select: dict[str, Any] | None = None, **_: Any):
    return _selected(load_benchmark("arith"), unlock_select)


def load_math500(unlock_select: dict[str, Any] | None = None, **_: Any):
    return _selected(load_benchmark("math500"), unlock_select)


def load_agieval_math(unlock_select: dict[str, Any] | None = None, **_: Any):
    return _selected(load_benchmark("agieval_math"), unlock_select)


def load_agieval_sat_math(unlock_select: dict[str, Any] | None = None, **_: Any):
    return _selected(load_benchmark("agieval_sat_math"), unlock_select)


# --------------------------------------------------------------------------------------------------
# Documents: add the gold answer (and, for AGIEval, the bare question) to the upstream fields
# --------------------------------------------------------------------------------------------------

# A reference without its marker gets gold_answer "" (one MATH *train* solution has an empty
# \boxed{}); every test document has one. Scoring a document without a gold answer raises (gold_of).


_CHOICE_PREFIX = re.compile(r"^\s*\(([A-G])\)\s*")


def _gold_from_gsm8k(doc: dict[str, Any]) -> dict[str, Any]:
    found = extract(doc["answer"])
    return {"gold_answer": found.answer if found.rule == "gsm8k" else ""}


def _gold_from_math(doc: dict[str, Any]) -> dict[str, Any]:
    found = extract(doc["solution"])
    return {"question": doc["problem"], "gold_answer": found.answer if found.rule == "boxed" else ""}


def _agieval_math_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {"question": agieval_question(doc["query"]), "gold_answer": doc["answer"]}


def _agieval_sat_math_fields(doc: dict[str, Any]) -> dict[str, Any]:
    index = doc["gold"][0]
    return {
        "question": agieval_question(doc["query"]),
        "gold_answer": "ABCDEFG"[index],
        "gold_option": _CHOICE_PREFIX.sub("", doc["choices"][index]).strip(),
    }


def _documents(dataset, fields, reference_dataset: str):
    """Each document plus ``fields(doc)`` and ``reference_dataset``: the data set whose reading of the paper's
    official code ``acc_reference`` applies (one of ``unlock_eval.checker.REFERENCE_DATASETS``)."""
    return dataset.map(lambda doc: {**fields(doc), "reference_dataset": reference_dataset})


def process_gsm8k(dataset):
    return _documents(dataset, _gold_from_gsm8k, "gsm8k")


def process_arith(dataset):
    return _documents(dataset, _gold_from_gsm8k, "arith")


def process_math(dataset):
    return _documents(dataset, _gold_from_math, "math")


def process_math500(dataset):
    return _documents(dataset, lambda doc: {"question": doc["problem"], "gold_answer": doc["answer"]}, "math500")


def process_agieval_math(dataset):
    return _documents(dataset, _agieval_math_fields, "agieval_math")


def process_agieval_sat_math(dataset):
    return _documents(dataset, _agieval_sat_math_fields, "agieval_sat_math")


# --------------------------------------------------------------------------------------------------
# Prompts: each task's doc_to_text renders a capability preset of unlock_eval.data.prompts (named in its
# metadata.unlock_prompt), so a task's prompt and the steering templates are the same text by construction.
# --------------------------------------------------------------------------------------------------


def preset_prompt(capability: str, template: str):
    """doc_to_text for one template ('locked' or 'unlocked') of a capability preset, filled with doc['question']."""
    text = getattr(CAPABILITIES[capability], f"{template}_template")

    def doc_to_text(doc: dict[str, Any]) -> str:
        return render(text, doc["question"])

    doc_to_text.__name__ = f"prompt_{capability}_{template}"
    return doc_to_text


prompt_cot_locked = preset_prompt("cot", "locked")
prompt_cot_unlocked = preset_prompt("cot", "unlocked")
prompt_cot_qa_locked = preset_prompt("cot_qa", "locked")
prompt_cot_qa_unlocked = preset_prompt("cot_qa", "unlocked")


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------

_PIECE_RE = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_")


def count_pieces(text: str) -> int:
    """Tokenizer-free length: runs of letters + single digits + single other non-space characters."""
    return len(_PIECE_RE.findall(text))


def gold_of(doc: dict[str, Any]) -> str:
    """The gold final answer of a document: ``gold_answer`` (our tasks) or else ``answer`` (reduced to
    its ``\\boxed{}``/``#### N`` part when it has one) or else the last ``\\boxed{}`` of ``solution``."""
    if doc.get("gold_answer") not in (None, ""):
        return str(doc["gold_answer"])
    if doc.get("answer") not in (None, ""):
        answer = str(doc["answer"])
        found = extract(answer)
        return found.answer if found.rule in ("boxed", "gsm8k") else answer.strip()
    if doc.get("solution") not in (None, ""):
        found = extract(str(doc["solution"]))
        if found.rule == "boxed":
            return found.answer
    raise ConfigError(
        "no gold answer in the document: give it a 'gold_answer' field, an 'answer' field (a final "
        "answer, or text with \\boxed{...} or '#### N'), or a 'solution' with \\boxed{...}; "
        f"fields present: {sorted(doc)}"
    )


class ScoreRecord(dict):
    """What the ``checker`` filter hands to ``process_results`` and lm-eval logs as ``filtered_resps``:
    answer, rule, gold, correct, verdict, gen_len_pieces, reference_answer, reference_correct (the paper's reading
    and its verdict, both None for a document without ``reference_dataset``). A dict whose ``str()`` is JSON,
    because lm-eval writes ``str(filtered_resp)`` into the samples file."""

    def __str__(self) -> str:
        return json.dumps(self, ensure_ascii=False)

    __repr__ = __str__


def score_text(text: str, doc: dict[str, Any]) -> ScoreRecord:
    """Extract the answer from ``text`` and judge it against the document's gold answer (the dict
    the ``checker`` filter logs)."""
    found = extract(text)
    gold = gold_of(doc)
    verdict = check(found.answer, gold)
    return ScoreRecord(
        answer=found.answer,
        rule=found.rule,
        gold=gold,
        correct=verdict.equal,
        verdict=verdict.reason,
        gen_len_pieces=count_pieces(text),
        **_reference_reading(text, doc, gold),
    )


def _reference_reading(text: str, doc: dict[str, Any], gold: str) -> dict[str, Any]:
    """``reference_answer`` and ``reference_correct``: the answer the paper's official code reads in ``text`` for the
    document's ``reference_dataset``, judged as ``acc`` judges ours but within the reference's limit
    (``REFERENCE_TIMEOUT``); both None when the document names no data set."""
    dataset = doc.get("reference_dataset")
    if not dataset:
        return {"reference_answer": None, "reference_correct": None}
    answer = extract_reference(text, dataset, gold=gold, choices=doc.get("choices") or ())
    if "gold_option" in doc:
        verdict = check_choice(answer, doc["gold_answer"], doc["gold_option"], REFERENCE_TIMEOUT)
    else:
        verdict = check(answer, gold, REFERENCE_TIMEOUT)
    return {"reference_answer": answer, "reference_correct": verdict.equal}


# '(D)', 'D)', 'D.', 'D:' or a lone 'D' opening the response (not the article in 'A car ...').
_LEADING_LETTER_RE = re.compile(r"^\s*\(?([A-G])(?:\)|[.:](?=\s|$)|\s*$|\s*\n)")
_PAREN_LETTER_RE = re.compile(r"\(([A-G])\)")


def extract_choice(text: str) -> Extraction:
    """Answer extraction for multiple choice: the checker's marked rules (boxed, '####', 'Final
    Answer:', 'the answer is') first; then rule ``choice``: a letter opening the response ('D', '(D)',
    'D.') or else the last '(X)' in it; then the checker's last-number fallback."""
    found = extract(text)
    if found.rule not in (None, "last_number"):
        return found
    m = _LEADING_LETTER_RE.match(text)
    if m is None:
        m = next(reversed(list(_PAREN_LETTER_RE.finditer(text))), None)
    if m is not None:
        return Extraction(f"({m.group(1)})", "choice")
    return found


def score_choice_text(text: str, doc: dict[str, Any]) -> ScoreRecord:
    """Multiple choice: correct when the answer names the gold letter, or names no letter and is
    mathematically equal to the gold option's content (e.g. '10' for '(D)10')."""
    letter, option = doc["gold_answer"], doc["gold_option"]
    found = extract_choice(text)
    verdict = check_choice(found.answer, letter, option)
    return ScoreRecord(
        answer=found.answer,
        rule=found.rule,
        gold=f"({letter}) {option}",
        correct=verdict.equal,
        verdict=verdict.reason,
        gen_len_pieces=count_pieces(text),
        **_reference_reading(text, doc, letter),
    )


def checker_filter(resps, docs):
    """lm-eval ``custom`` filter: each generation -> the dict of :func:`score_text`."""
    return [[score_text(text, doc) for text in doc_resps] for doc_resps, doc in zip(resps, docs)]


def checker_choice_filter(resps, docs):
    """lm-eval ``custom`` filter for multiple choice (SAT-Math): see :func:`score_choice_text`."""
    return [[score_choice_text(text, doc) for text in doc_resps] for doc_resps, doc in zip(resps, docs)]


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    """Metrics from the ``checker`` filter's dict (or, without that filter, from the raw text)."""
    record = results[0]
    if isinstance(record, str):
        record = score_choice_text(record, doc) if "gold_option" in doc else score_text(record, doc)
    elif not isinstance(record, dict) or "correct" not in record:
        raise ConfigError(
            "process_results expects the generated text or the dict made by the checker filter "
            f"(utils.checker_filter), got {type(record).__name__}"
        )
    rule = record["rule"]
    metrics = {
        "acc": float(record["correct"]),
        "acc_strict": float(bool(record["correct"]) and rule in STRICT_RULES),
        "answer_found": float(record["answer"] is not None),
        "gen_len_pieces": float(record["gen_len_pieces"]),
    }
    if record.get("reference_correct") is not None:  # the paper's reading (documents naming a reference_dataset)
        metrics["acc_reference"] = float(record["reference_correct"])
    metrics.update({f"rule_{name}": float(rule == name) for name in RULES})
    if "gold_option" in doc:  # multiple choice: its letter fallback too
        metrics["rule_choice"] = float(rule == "choice")
    return metrics
