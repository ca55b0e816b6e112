"""Tests of the lm-eval tasks in tasks/: names and settings, Hub defaults equal upstream lm-eval's, local
loading from $UNLOCK_EVAL_DATA_DIR (sizes, Hub schemas, errors), scoring and logging through
lm-eval's evaluator with a scripted model, the README's example YAML, and (slow) a real
``lm_eval --model hf`` run on the embedded SmolLM2 GGUF model.
"""

from __future__ import annotations

import importlib.util
import json
import operator
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import unlock_eval.tasks.utils as utils
from unlock_eval.checker import RULES
from unlock_eval.data import benchmarks as data
from unlock_eval.errors import ConfigError
from unlock_eval.tasks import TASKS_DIR  # the installed copy: what users get

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("UNLOCK_EVAL_DATA_DIR", "").strip() or REPO.parent / "shared" / "data")
HAVE_DATA = (DATA_DIR / "math" / "test.jsonl").is_file()
needs_data = pytest.mark.skipif(
    not HAVE_DATA, reason=f"benchmark data not found at {DATA_DIR} (set UNLOCK_EVAL_DATA_DIR)"
)

BENCHMARKS = ["gsm8k", "math", "math500", "agieval_math", "agieval_sat_math"]
# infix -> (capability preset, template): the paper's locked prompt, its prompted twin, and the same two for the
# upstream-style ("qa") prompts
VARIANTS = {
    "": ("cot", "locked"),
    "_cot": ("cot", "unlocked"),
    "_qa": ("cot_qa", "locked"),
    "_qa_cot": ("cot_qa", "unlocked"),
}
LOCKED_OF = {"": "", "_cot": "", "_qa": "_qa", "_qa_cot": "_qa"}


def leaf_tasks(infix: str) -> list[str]:
    return [
        f"math{infix}_unlock_{s}" if b == "math" else f"{b}{infix}_unlock"
        for b in [*BENCHMARKS, "arith"]
        for s in (data.MATH_SUBJECTS if b == "math" else [None])
    ]


LEAF_TASKS = [t for t in leaf_tasks("") if not t.startswith("arith")]  # the unlock_math group (locked prompt)
ALL_LEAF_TASKS = [t for infix in VARIANTS for t in leaf_tasks(infix)]
GROUPS = [g for infix in VARIANTS for g in (f"math{infix}_unlock", f"unlock_math{infix}")]


def _yaml(path: Path) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path, resolve_func=False)


@pytest.fixture
def local_data(monkeypatch):
    if not HAVE_DATA:
        pytest.skip(f"benchmark data not found at {DATA_DIR}")
    monkeypatch.setenv("UNLOCK_EVAL_DATA_DIR", str(DATA_DIR))


@pytest.fixture(scope="module")
def task_manager(lm_eval_index):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR))


# --------------------------------------------------------------------------------------------------
# Names and settings
# --------------------------------------------------------------------------------------------------


def test_task_files_and_names():
    configs = {p.name: _yaml(p) for p in TASKS_DIR.glob("*.yaml")}
    names = {cfg.get("group") or cfg.get("task") for cfg in configs.values()}
    assert names == set(ALL_LEAF_TASKS) | set(GROUPS)
    for infix in VARIANTS:
        assert _yaml(TASKS_DIR / f"unlock_math{infix}.yaml")["task"] == [f"{b}{infix}_unlock" for b in BENCHMARKS]
        assert _yaml(TASKS_DIR / f"math{infix}_unlock.yaml")["task"] == [
            f"math{infix}_unlock_{s}" for s in data.MATH_SUBJECTS
        ]


def test_every_task_and_group_names_its_preset_and_every_locked_one_has_a_prompted_twin():
    """metadata.unlock_prompt is what reports read: the preset and template a task renders, and for a prompted
    task the locked task it is the prompted form of."""
    for infix, (capability, template) in VARIANTS.items():
        for name in leaf_tasks(infix) + [f"math{infix}_unlock", f"unlock_math{infix}"]:
            meta = _yaml(TASKS_DIR / f"{name}.yaml")["metadata"]["unlock_prompt"]
            assert (meta["capability"], meta["template"]) == (capability, template), name
            if not name.startswith(("math" + infix + "_unlock", "unlock_math")) or "_unlock_" in name:  # a leaf task
                doc_to_text = _yaml(TASKS_DIR / f"{name}.yaml")["doc_to_text"]
                assert doc_to_text.endswith(f"utils.prompt_{capability}_{template}"), (name, doc_to_text)
            if template == "unlocked":
                locked = name.replace(infix + "_unlock", LOCKED_OF[infix] + "_unlock").replace(
                    "unlock_math" + infix, "unlock_math" + LOCKED_OF[infix]
                )
                assert meta["prompted_of"] == locked, name
                assert (TASKS_DIR / f"{locked}.yaml").is_file()
            else:
                assert "prompted_of" not in meta, name


def _declared_names(text: str) -> set[str]:
    """Task, group and tag names a task YAML declares (`task: x`, `group: x`, `tag: x` or a `tag:` list)."""
    found = set(re.findall(r"^(?:task|group|tag):[ \t]*([\w.-]+)[ \t]*$", text, re.M))
    for block in re.findall(r"^tag:[ \t]*\n((?:[ \t]+-[ \t]*\S+[ \t]*\n)+)", text, re.M):
        found |= set(re.findall(r"-[ \t]*(\S+)", block))
    return found


def test_no_name_shadows_an_upstream_task():
    upstream = Path(importlib.util.find_spec("lm_eval").origin).parent / "tasks"
    names = set()
    for path in upstream.rglob("*.yaml"):
        names |= _declared_names(path.read_text(encoding="utf-8", errors="replace"))
    assert len(names) > 1000 and {"gsm8k", "hendrycks_math_algebra", "minerva_math", "agieval"} <= names
    ours = set()
    for path in TASKS_DIR.glob("*yaml"):  # task files and the _*_yaml templates they include
        ours |= _declared_names(path.read_text(encoding="utf-8"))
    assert set(ALL_LEAF_TASKS) | set(GROUPS) | {"unlock_math_tasks"} <= ours
    assert not ours & names, ours & names


# The reference's stop strings (rishabbala/Steering-Vector-Transfer@9988ad7, base_class.py stop_words)
REFERENCE_STOPS = [
    "</s>",
    "<|im_end|>",
    "<|endoftext|>",
    "assistant",
    "Assistant",
    "user",
    "_end",
    "_start",
    "Question:",
    "Question",
    "Continuation",
    "Continuing",
    "Continues",
    "You are an AI",
    "[Question]",
    "```",
    "I hope",
    "Subproblem",
    "</atok>",
]


@pytest.mark.parametrize("name", ALL_LEAF_TASKS)
def test_generation_settings(name):
    cfg = _yaml(TASKS_DIR / f"{name}.yaml")
    gen = cfg["generation_kwargs"]
    assert gen["do_sample"] is False and gen["max_gen_toks"] == 512 and cfg["num_fewshot"] == 0
    assert gen["until"] == REFERENCE_STOPS
    assert not any(stop.strip() == "" for stop in gen["until"]), "a blank-line stop would cut rationales"
    assert cfg["output_type"] == "generate_until"
    assert cfg["filter_list"][0]["name"] == "checker"
    rules = [f"rule_{rule}" for rule in (*RULES, "choice")]
    metrics = ["acc", "acc_strict", "acc_reference", "answer_found", "gen_len_pieces", *rules]
    assert [m["metric"] for m in cfg["metric_list"]] == metrics


@needs_data
def test_each_task_renders_the_template_of_the_preset_it_names(local_data, task_manager):
    """Through lm-eval's own task objects: the prompt of every task equals its preset's template filled with the
    document's question (for the paper's cot preset: general-direct / general-cot byte for byte)."""
    from unlock_eval.data.prompts import CAPABILITIES, render

    all_names = [t for infix in VARIANTS for t in leaf_tasks(infix)]
    names = [t for t in all_names if "_unlock_" not in t or t.endswith("_unlock_algebra")]  # one MATH subject each
    tasks = task_manager.load(names)["tasks"]
    assert set(tasks) == set(names)
    for name, task in tasks.items():
        meta = task.config.metadata["unlock_prompt"]
        doc = next(iter(task.test_docs()))
        question = doc["question"]
        expected = render(getattr(CAPABILITIES[meta["capability"]], f"{meta['template']}_template"), question)
        assert task.doc_to_text(doc) == expected, name
        assert question and question in expected
    gsm = tasks["gsm8k_unlock"]
    assert gsm.doc_to_text(next(iter(gsm.test_docs()))).startswith("Solve the following question and place")
    assert gsm.doc_to_text(next(iter(gsm.test_docs()))).endswith("?\n\nAnswer:\n")


# --------------------------------------------------------------------------------------------------
# Data: Hub defaults = upstream lm-eval's; local files = same schema
# --------------------------------------------------------------------------------------------------


def test_hub_defaults_are_the_upstream_ones():
    upstream = Path(importlib.util.find_spec("lm_eval").origin).parent / "tasks"
    expect = {
        "gsm8k": _yaml(upstream / "gsm8k" / "gsm8k.yaml"),
        "math": _yaml(upstream / "hendrycks_math" / "hendrycks_math_algebra.yaml"),
        "math500": _yaml(upstream / "hendrycks_math" / "hendrycks_math500.yaml"),
        "agieval_math": _yaml(upstream / "agieval" / "math.yaml"),
        "agieval_sat_math": _yaml(upstream / "agieval" / "sat-math.yaml"),
    }
    for benchmark, cfg in expect.items():
        assert data.HUB[benchmark][0] == cfg["dataset_path"], benchmark
        if benchmark in ("gsm8k", "math500"):
            assert data.HUB[benchmark][1] == cfg["dataset_name"]
    ours = {
        "gsm8k": "gsm8k_unlock",
        "math": "math_unlock_algebra",
        "math500": "math500_unlock",
        "agieval_math": "agieval_math_unlock",
        "agieval_sat_math": "agieval_sat_math_unlock",
    }
    for benchmark, task in ours.items():
        assert _yaml(TASKS_DIR / f"{task}.yaml")["dataset_path"] == data.HUB[benchmark][0]
    upstream_file = {
        "counting_and_probability": "counting_and_prob",
        "number_theory": "num_theory",
        "precalculus": "precalc",
    }
    for subject in utils.MATH_SUBJECTS:
        up = _yaml(upstream / "hendrycks_math" / f"hendrycks_math_{upstream_file.get(subject, subject)}.yaml")
        assert up["dataset_name"] == subject
        assert _yaml(TASKS_DIR / f"math_unlock_{subject}.yaml")["dataset_kwargs"] == {"unlock_subject": subject}


def test_without_the_variable_the_hub_is_used(monkeypatch):
    import datasets

    calls = []
    monkeypatch.delenv("UNLOCK_EVAL_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, **kw: calls.append((path, name)) or "hub")
    assert utils.load_gsm8k(version=1.0, pretrained="x") == "hub"
    utils.load_math(unlock_subject="geometry", config_source="x.yaml")
    utils.load_math500()
    utils.load_agieval_math()
    utils.load_agieval_sat_math()
    assert calls == [
        ("openai/gsm8k", "main"),
        ("EleutherAI/hendrycks_math", "geometry"),
        ("HuggingFaceH4/MATH-500", "default"),
        ("hails/agieval-math", None),
        ("hails/agieval-sat-math", None),
    ]
    monkeypatch.setenv("UNLOCK_EVAL_DATA_DIR", "")  # empty counts as unset
    utils.load_gsm8k()
    assert calls[-1] == ("openai/gsm8k", "main")


def test_offline_without_the_variable_names_the_data_set_and_the_variable(monkeypatch):
    monkeypatch.delenv("UNLOCK_EVAL_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ConfigError,
        match=r"cannot load openai/gsm8k \(main\) from the Hugging Face Hub .*"
        r"set UNLOCK_EVAL_DATA_DIR to a folder holding gsm8k/train.jsonl",
    ):
        utils.load_gsm8k()


# The Hub data sets' schemas (their dataset cards), which local rows must be converted to.
HUB_SCHEMAS = {
    "gsm8k": {"question": "string", "answer": "string"},
    "math": {"problem": "string", "level": "string", "type": "string", "solution": "string"},
    "math500": {
        "problem": "string",
        "solution": "string",
        "answer": "string",
        "subject": "string",
        "level": "int64",
        "unique_id": "string",
    },
    "agieval_math": {"query": "string", "answer": "string"},
    "agieval_sat_math": {"query": "string", "choices": "list<string>", "gold": "list<int64>"},
}


def _schema(dataset) -> dict[str, str]:
    out = {}
    for name, feature in dataset.features.items():
        if hasattr(feature, "dtype"):
            out[name] = feature.dtype
        else:  # List / Sequence
            out[name] = f"list<{feature.feature.dtype}>"
    return out


@needs_data
def test_local_files_load_in_the_hub_schema(local_data):
    sizes = {"gsm8k": 1319, "math500": 500, "agieval_math": 1000, "agieval_sat_math": 220}
    for benchmark, size in sizes.items():
        dd = utils.load_benchmark(benchmark)
        assert len(dd["test"]) == size
        assert _schema(dd["test"]) == HUB_SCHEMAS[benchmark], benchmark
    assert len(utils.load_gsm8k()["train"]) == 7473
    subject_sizes = {
        "algebra": 1187,
        "counting_and_probability": 474,
        "geometry": 479,
        "intermediate_algebra": 903,
        "number_theory": 540,
        "prealgebra": 871,
        "precalculus": 546,
    }
    train = 0
    for subject, size in subject_sizes.items():
        dd = utils.load_math(unlock_subject=subject, version=1.0)
        assert len(dd["test"]) == size
        assert _schema(dd["test"]) == HUB_SCHEMAS["math"]
        assert {row["type"] for row in dd["test"]} == {dd["test"][0]["type"]}
        train += len(dd["train"])
    assert train == 7500


@needs_data
def test_agieval_rows_become_agieval_zero_shot_queries(local_data):
    row = utils.load_agieval_math()["test"][0]
    assert row["query"].startswith("Q: Let $\\lambda$ be a constant")
    assert row["query"].endswith("f(x) \\neq x$ but $f(f(x)) = x.$\nA: The answer is")
    assert row["answer"] == "(3,4]"
    sat = utils.load_agieval_sat_math()["test"]
    assert sat[0]["query"] == (
        "Q: If $\\frac{x-1}{3}=k$ and $k=3$, what is the value of $x ?$ Answer Choices: (A)2 (B)4 (C)9 (D)10\n"
        "A: Among A through D, the answer is"
    )
    assert sat[0]["choices"] == ["(A)2", "(B)4", "(C)9", "(D)10"] and sat[0]["gold"] == [3]
    docs = utils.process_agieval_sat_math(sat)
    assert docs[0]["question"].endswith("Answer Choices: (A)2 (B)4 (C)9 (D)10")
    assert (docs[0]["gold_answer"], docs[0]["gold_option"]) == ("D", "10")
    assert set(docs["reference_dataset"]) == {"agieval_sat_math"}
    with_passage = [d for d in docs if not d["query"].startswith("Q: ")]
    assert len(with_passage) == 14
    assert all("\n" in d["question"] and "Q: " not in d["question"] for d in with_passage)
    labels = [json.loads(line)["label"] for line in open(DATA_DIR / "agieval" / "sat-math.jsonl")]
    assert [d["gold_answer"] for d in docs] == labels


@needs_data
def test_processed_documents(local_data):
    gsm = utils.process_gsm8k(utils.load_gsm8k()["test"])
    assert gsm[0]["gold_answer"] == "18"
    assert set(gsm.column_names) == {"question", "answer", "gold_answer", "reference_dataset"}
    assert set(gsm["reference_dataset"]) == {"gsm8k"}
    math = utils.process_math(utils.load_math(unlock_subject="algebra")["test"])
    assert math[0]["gold_answer"] == "2"
    fields = {"problem", "level", "type", "solution", "question", "gold_answer", "reference_dataset"}
    assert set(math.column_names) == fields
    assert set(math["reference_dataset"]) == {"math"}
    assert all(d["question"] == d["problem"] for d in math)  # every task's prompt fills doc["question"]
    m500 = utils.process_math500(utils.load_math500()["test"])
    assert all(d["gold_answer"] == d["answer"] and d["question"] == d["problem"] for d in m500)
    agi = utils.process_agieval_math(utils.load_agieval_math()["test"])
    assert agi[0]["question"].startswith("Let $\\lambda$") and agi[0]["gold_answer"] == "(3,4]"
    assert (set(m500["reference_dataset"]), set(agi["reference_dataset"])) == ({"math500"}, {"agieval_math"})


def test_local_errors_name_the_path_and_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("UNLOCK_EVAL_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"gsm8k/(train|test)\.jsonl.*UNLOCK_EVAL_DATA_DIR"):
        utils.load_gsm8k()
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "math500.jsonl").write_text('{"problem": 1\n')
    with pytest.raises(ConfigError, match=r"math500\.jsonl:1: not valid JSON"):
        utils.load_math500()
    monkeypatch.setenv("UNLOCK_EVAL_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"UNLOCK_EVAL_DATA_DIR=.*nope.* is not a directory"):
        utils.load_agieval_math()
    with pytest.raises(ConfigError, match="unlock_subject"):
        utils.load_math(version=1.0)
    with pytest.raises(ConfigError, match="valid: algebra"):
        utils.load_benchmark("math", "calculus")
    with pytest.raises(ConfigError, match="valid: gsm8k"):
        utils.load_benchmark("aime")


# --------------------------------------------------------------------------------------------------
# Scoring helpers
# --------------------------------------------------------------------------------------------------


def test_scoring_helpers():
    doc = {"question": "q", "answer": "so 2+2 = <<2+2=4>>4\n#### 4", "gold_answer": "4"}
    record = utils.score_text("We get 2+2=4. The answer is 4.", doc)
    assert (record["answer"], record["rule"], record["correct"], record["verdict"]) == (
        "4",
        "answer_is",
        True,
        "identical",
    )
    assert json.loads(str(record))["rule"] == "answer_is"  # what lm-eval writes to the samples file
    no_rule = {f"rule_{rule}": 0.0 for rule in RULES}
    assert utils.process_results(doc, [record]) == {
        "acc": 1.0,
        "acc_strict": 1.0,
        "answer_found": 1.0,
        "gen_len_pieces": 13.0,
        **no_rule,
        "rule_answer_is": 1.0,
    }
    assert utils.process_results(doc, ["no idea"]) == {
        "acc": 0.0,
        "acc_strict": 0.0,
        "answer_found": 0.0,
        "gen_len_pieces": 2.0,
        **no_rule,
    }
    with pytest.raises(ConfigError, match="checker filter"):
        utils.process_results(doc, [42])
    assert utils.gold_of({"answer": "blah\n#### 1,234"}) == "1,234"
    assert utils.gold_of({"answer": "\\frac{1}{2}"}) == "\\frac{1}{2}"
    assert utils.gold_of({"solution": "so $\\boxed{7}$"}) == "7"
    with pytest.raises(ConfigError, match="gold_answer"):
        utils.gold_of({"question": "q"})
    assert utils.count_pieces("x_1 = 12.5, so $\\frac{a}{b}$") == 20
    assert utils.count_pieces("") == 0


def test_choice_scoring():
    doc = {"gold_answer": "D", "gold_option": "10"}
    cases = {
        " (D)": (True, "choice"),
        " D": (True, "choice"),
        " The answer is (C).": (False, "answer_is"),
        " x - 1 = 9, so x = 10": (True, "last_number"),
        " A car": (False, None),
        " \\boxed{D}": (True, "boxed"),
        " 9": (False, "last_number"),
    }
    for text, (correct, rule) in cases.items():
        record = utils.score_choice_text(text, doc)
        assert (record["correct"], record["rule"]) == (correct, rule), text
    assert utils.choice_letter("\\text{(B)}") == "B" and utils.choice_letter("10") is None


@pytest.mark.parametrize(
    "text, gold, rule, acc, strict",
    [
        ("Add them: 2 + 4 = 6. The final answer is <atok> 6", "6", "atok", 1.0, 1.0),  # strict hit
        ("so it is $\\boxed{6}$", "6", "boxed", 1.0, 1.0),
        ("Final Answer: The final answer is $6$. I hope it is correct.", "6", "final_answer", 1.0, 1.0),
        ("The answer is 6.", "6", "answer_is", 1.0, 1.0),
        ("Friend 1:\nFriend 2:\nFriend 3:\nFriend 4:\nFriend 5:\nFriend 6:", "6", "last_number", 1.0, 0.0),
        ("The final answer is <atok> 7", "6", "atok", 0.0, 0.0),  # strict miss
        ("I do not know.", "6", None, 0.0, 0.0),  # no answer
    ],
)
def test_strict_and_lenient_accuracy_per_rule(text, gold, rule, acc, strict):
    doc = {"question": "q", "gold_answer": gold}
    metrics = utils.process_results(doc, utils.checker_filter([[text]], [doc])[0])
    assert (metrics["acc"], metrics["acc_strict"], metrics["answer_found"]) == (acc, strict, float(rule is not None))
    fired = {name for name, v in metrics.items() if name.startswith("rule_") and v}
    assert fired == ({f"rule_{rule}"} if rule else set())
    assert "rule_choice" not in metrics  # only multiple choice reports its letter fallback


def test_choice_letter_is_a_fallback():
    doc = {"question": "q", "gold_answer": "D", "gold_option": "10"}
    lenient = utils.process_results(doc, [utils.score_choice_text(" (D)", doc)])
    assert (lenient["acc"], lenient["acc_strict"], lenient["rule_choice"]) == (1.0, 0.0, 1.0)
    marked = utils.process_results(doc, [utils.score_choice_text(" The final answer is <atok> (D)", doc)])
    assert (marked["acc"], marked["acc_strict"], marked["rule_atok"], marked["rule_choice"]) == (1.0, 1.0, 1.0, 0.0)


# --------------------------------------------------------------------------------------------------
# Through lm-eval's evaluator with a scripted model
# --------------------------------------------------------------------------------------------------


def _scripted_lm(answer_for):
    from lm_eval.api.model import LM

    class Scripted(LM):
        def loglikelihood(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def generate_until(self, requests, disable_tqdm=False):
            self.prompts = [req.arguments[0] for req in requests]
            return [answer_for(req.doc) for req in requests]

    return Scripted()


def _right(doc):
    if "gold_option" in doc:
        return f" ({doc['gold_answer']})"
    return f" Let me compute. 1+1=2. So the answer is $\\boxed{{{doc['gold_answer']}}}$."


def _wrong(doc):
    return " I think the answer is 123456789."


@needs_data
@pytest.mark.slow
def test_evaluator_scores_and_logs(local_data, task_manager):
    import lm_eval

    for answer_for, expected in ((_right, 1.0), (_wrong, 0.0)):
        lm = _scripted_lm(answer_for)
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=["unlock_math", "gsm8k_cot_unlock"],
            task_manager=task_manager,
            limit=2,
            log_samples=True,
            bootstrap_iters=0,
        )
        results = out["results"]
        for task in LEAF_TASKS:
            assert results[task]["acc,checker"] == expected, (task, results[task])
            assert results[task]["answer_found,checker"] == 1.0
            assert results[task]["gen_len_pieces,checker"] > 0
            choice = task.startswith("agieval_sat_math")  # right: " (D)", the letter fallback; not strict
            assert results[task]["acc_strict,checker"] == (0.0 if choice else expected), (task, results[task])
            assert ("rule_choice,checker" in results[task]) is choice
            # the paper's reading misses two of the right answers: MATH-500's first (its shortest piece, '... 1+1=2.
            # So the', reads 2) and AGIEval's '(3,4]' (a numeric gold: the last number of the text, commas gone: 34)
            missed = task in ("math500_unlock", "agieval_math_unlock") and expected
            assert results[task]["acc_reference,checker"] == (0.5 if missed else expected), (task, results[task])
        assert results["math_unlock"]["acc,checker"] == expected
        assert results["math_unlock"]["acc_strict,checker"] == expected
        assert results["math_unlock"]["acc_reference,checker"] == expected
        sample = out["samples"]["math500_unlock"][0]
        record = sample["filtered_resps"][0]
        fields = {"answer", "rule", "gold", "correct", "verdict", "gen_len_pieces"}
        assert set(record) == fields | {"reference_answer", "reference_correct"}
        assert record["rule"] in ("boxed", "answer_is")
    assert any(p.endswith("Answer: Let's think step by step.\n") for p in lm.prompts)


@needs_data
@pytest.mark.slow
def test_readme_example_yaml_runs(tmp_path, monkeypatch, lm_eval_index):
    import lm_eval
    from lm_eval.tasks import TaskManager

    readme = (TASKS_DIR / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(# my_quiz\.yaml.*?)```", readme, re.S).group(1)
    (tmp_path / "my_quiz.yaml").write_text(block, encoding="utf-8")
    rows = [
        {"question": "What is 1/4 + 1/4?", "answer": "\\frac{1}{2}"},
        {"question": "Solve x+1=3.", "answer": "x = 2"},
        {"question": "Sum?", "answer": "Add them.\n#### 1,000"},
    ]
    (tmp_path / "quiz.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # data_files: quiz.jsonl resolves against the cwd
    replies = iter([" 0.5", " The answer is 2.", " Final Answer: 1000 dollars"])
    lm = _scripted_lm(lambda doc: next(replies))
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=["my_quiz"],
        task_manager=TaskManager(include_path=str(tmp_path)),
        log_samples=True,
        bootstrap_iters=0,
    )
    assert out["results"]["my_quiz"]["acc,checker"] == 1.0
    assert [s["filtered_resps"][0]["rule"] for s in out["samples"]["my_quiz"]] == [
        "last_number",
        "answer_is",
        "final_answer",
    ]


@pytest.mark.slow
@pytest.mark.process
def test_readme_example_runs_from_a_users_folder_that_has_its_own_tasks_package(tmp_path):
    """lm-eval users often keep a `tasks/` package of their own; `python -m lm_eval` run there puts it first on
    sys.path. Our wheel installs no top-level `tasks`, and the example names `unlock_eval.tasks.utils`."""
    from adapter_fixtures import save_tiny

    readme = (TASKS_DIR / "README.md").read_text(encoding="utf-8")
    (tmp_path / "my_quiz.yaml").write_text(re.search(r"```yaml\n(# my_quiz\.yaml.*?)```", readme, re.S).group(1))
    (tmp_path / "quiz.jsonl").write_text(json.dumps({"question": "What is 1/4 + 1/4?", "answer": "\\frac{1}{2}"}))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "__init__.py").write_text("")
    (tmp_path / "tasks" / "utils.py").write_text("def checker_filter(*a):\n    raise SystemExit('user tasks used')\n")
    model = save_tiny(tmp_path / "tiny_model", "gpt2", 2, 32, 0)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}  # as a user runs it: cwd first
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model}",
            "--tasks",
            "my_quiz",
            "--include_path",
            ".",
            "--gen_kwargs",
            "max_gen_toks=4",
            "--device",
            "cpu",
            "--output_path",
            "out",
            "--log_samples",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = [json.loads(line) for f in (tmp_path / "out").rglob("samples_my_quiz_*.jsonl") for line in open(f)]
    record = json.loads(samples[0]["filtered_resps"][0])
    assert record["gold"] == "\\frac{1}{2}" and set(record) >= {"answer", "rule", "correct", "verdict"}


# --------------------------------------------------------------------------------------------------
# The real thing: lm_eval --model hf on the embedded SmolLM2 GGUF, offline
# --------------------------------------------------------------------------------------------------


OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def test_arith_is_generated_deterministic_disjoint_and_checkable():
    """The offline task: the same rows on every call, train and test share no question, every gold answer is the
    value its rationale computes, and the task loads through our loader with gold answers the checker reads."""
    from unlock_eval.data import arith

    train, test = arith.rows("train"), arith.rows("test")
    assert (len(train), len(test)) == (arith.SIZES["train"], arith.SIZES["test"]) and train == arith.rows("train")
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert len({r["question"] for r in test}) == len(test)
    for row in train + test:
        rationale, gold = row["answer"].rsplit("\n#### ", 1)
        last = re.findall(r"= (\d+)", rationale)[-1]
        assert last == gold and int(gold) >= 10, row
        for x, op, y, z in re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", rationale):  # every step is right
            assert OPERATIONS[op](int(x), int(y)) == int(z), row
    assert arith._generate(arith.SEEDS["test"], 5) == arith._generate(arith.SEEDS["test"], 5)
    docs = utils.process_arith(utils.load_arith()["test"])
    assert docs[0]["gold_answer"] == test[0]["answer"].rsplit("#### ", 1)[1]
    assert set(docs["reference_dataset"]) == {"arith"}
    assert utils.score_text("The final answer is <atok> " + docs[0]["gold_answer"], docs[0])["correct"]
    from unlock_eval.data.prompts import load_questions

    assert load_questions("arith", 8) == [r["question"] for r in train[-8:]]  # extract_from=arith: offline


def test_arith_answers_are_spread_so_a_lucky_hit_is_rare():
    """The fair design (issue: the last number of almost any text hit the old answers, mostly under 10): answers
    between 10 and about 100, spread so that under 2% of the pairs of problems share their answer (the chance that
    an output scored against another problem's gold matches), and never one of the question's own numbers."""
    from collections import Counter

    from unlock_eval.data import arith

    for split in ("train", "test"):
        rows = arith.rows(split)
        golds = [int(r["answer"].rsplit("\n#### ", 1)[1]) for r in rows]
        assert all(10 <= g <= 110 for g in golds), split
        counts, n = Counter(golds), len(golds)
        assert len(counts) >= 60 and max(counts.values()) / n < 0.05, (split, counts.most_common(3))
        equal_pairs = sum(c * (c - 1) for c in counts.values()) / (n * (n - 1))
        assert equal_pairs < 0.02, (split, equal_pairs)
        for row, gold in zip(rows, golds):
            assert str(gold) not in re.findall(r"\d+", row["question"]), row  # echoing the question never scores
    one_step = sum("#### " in r["answer"] and r["answer"].count(" = ") == 1 for r in arith.rows("test"))
    assert 0.55 < one_step / arith.SIZES["test"] < 0.8  # two thirds one-step
