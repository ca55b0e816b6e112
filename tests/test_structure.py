"""The package's shape: one import namespace in the wheel, one registration path, one argument table, one error
policy at the boundary, extraction data from the same place as the tasks' data, and cheap light imports."""

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from unlock_eval import params
from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.spec import UnlockSpec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return zipfile.ZipFile(next(out.glob("unlock_eval-*.whl")))


def test_wheel_installs_one_import_package_plus_the_start_up_hook(wheel):
    names = wheel.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"unlock_eval", "unlock_eval_startup.pth"}
    for inside in (
        "unlock_eval/tasks/gsm8k_unlock.yaml",
        "unlock_eval/tasks/utils.py",
        "unlock_eval/model_adapters/unlock.py",
        "unlock_eval/model_adapters/registry.py",
        "unlock_eval/reports/__init__.py",
        "unlock_eval/checker/__init__.py",
    ):
        assert inside in names, inside
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_no_entry_point_groups_nothing_reads(wheel):
    """lm-eval 0.4.13 reads no entry points: the .pth hook is the one way in, so the wheel declares none."""
    entry_points = next((n for n in wheel.namelist() if n.endswith("entry_points.txt")), None)
    groups = re.findall(r"^\[(.+)\]$", wheel.read(entry_points).decode(), re.M) if entry_points else []
    assert groups == ["console_scripts"]


def test_light_modules_import_without_torch():
    code = (
        "import sys, unlock_eval, unlock_eval.errors, unlock_eval.params, unlock_eval.model_adapters.registry; "
        "print(sorted(m for m in ('torch', 'transformers', 'lm_eval') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("model", ["unlock", "weight_transfer", "logit_transfer"])
def test_docs_argument_table_is_the_declared_table(model):
    """docs/model-arguments.md shows `unlock-eval args MODEL` verbatim: help text and defaults come from the one
    declaration."""
    from unlock_eval.model_adapters.registry import MODELS

    page = (REPO / "docs" / "model-arguments.md").read_text(encoding="utf-8")
    table = params.markdown_table(MODELS[model].spec_class())
    assert f"## {model}\n" in page and table in page[page.index(f"## {model}\n") :]
    out = subprocess.run(
        [sys.executable, "-P", "-m", "unlock_eval.cli", "args", model], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == table
    if model == "unlock":
        assert table == params.markdown_table(UnlockSpec)


def test_each_argument_is_declared_once_and_checked_by_the_engine(monkeypatch):
    from unlock_eval.methods.unlock import align

    calls = []
    real = align.check_rank
    monkeypatch.setattr(align, "check_rank", lambda *a, **kw: calls.append((a, kw)) or real(*a, **kw))
    with pytest.raises(ConfigError, match="k=9 exceeds the number of prompts n=8"):
        UnlockSpec(target="t", k=9, n=8)
    assert calls == [((9, 8), {"center": False})]  # the spec runs the engine's own check, the one fit() runs
    with pytest.raises(ConfigError, match="aggregator='median': allowed values are mean, pca"):
        UnlockSpec(target="t", aggregator="median")
    spec, rest = params.parse_known(UnlockSpec, {"target": "t", "alpha": "0.5", "k": 4.0, "layers": "1-3", "x": 1})
    assert (spec.alpha, spec.k, spec.layers, spec.source, spec.source_locked) == (0.5, 4, [1, 2, 3], "t", "t")
    assert rest == {"x": 1}
    assert spec.locked_template != spec.unlocked_template  # the default capability's pair
    assert UnlockSpec(target="t", alpha="0.5", k="4").alpha == 0.5  # built from Python: parsed the same way


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"source": "s"},
        {"source": "s", "source_locked": "b"},
        {"source": "s", "source_locked": "b", "shared_template": "unlocked"},
        {"source": "s", "locked_template": "Q: {question}\n", "unlocked_template": "R: {question}\n"},
    ],
)
def test_a_spec_rebuilds_from_its_recorded_fields(extra):
    """config.unlock in a results file holds as_dict(): rebuilding from it (or replacing one field, as a sweep
    does) gives the same run."""
    import dataclasses

    spec = UnlockSpec(target="t", **extra)
    assert UnlockSpec(**spec.as_dict()) == spec
    assert dataclasses.replace(spec, alpha=0.3).as_dict() == {**spec.as_dict(), "alpha": 0.3}


def test_templates_keep_their_trailing_newline_through_lm_evals_parser():
    """A quoted value is read as a Python literal by lm-eval's CLI: the newline that ends a template is part of
    it (both templates must end on the same token)."""
    from lm_eval._cli.utils import key_val_to_dict

    from unlock_eval.model_adapters.arguments import parse_model_args

    raw = key_val_to_dict('target=t,locked_template="Q, {question}\\nA:\\n",unlocked_template="Q: {question}\\nB.\\n"')
    spec, _ = parse_model_args(UnlockSpec, "unlock", raw)
    assert spec.locked_template == "Q, {question}\nA:\n" and spec.unlocked_template.endswith("B.\n")
    unquoted, _ = parse_model_args(
        UnlockSpec,
        "unlock",
        key_val_to_dict(
            r"target=t,locked_template=Q: {question}\n"
            r",unlocked_template=R: {question}\n"
        ),
    )
    assert unquoted.locked_template == "Q: {question}\n"


def test_source_layers_path_must_apply_to_some_model():
    with pytest.raises(ConfigError, match="source_layers_path: the source is the target here"):
        UnlockSpec(target="t", source_layers_path="model.layers")
    assert UnlockSpec(target="t", source="s", source_layers_path="a.b").layers_path_of("s") == (
        "a.b",
        "source_layers_path",
    )


# ------------------------------------------------------------------------------------------------ extraction data


def _fake_hub(monkeypatch, rows_by_config):
    import datasets

    calls = []

    def load_dataset(path, name=None, split=None, **_):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(rows_by_config[name])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


@pytest.mark.parametrize("unset", ["delete", "empty"])
def test_extraction_questions_come_from_the_hub_train_split_without_the_variable(monkeypatch, unset):
    from unlock_eval.data.benchmarks import MATH_SUBJECTS
    from unlock_eval.data.prompts import load_questions

    if unset == "delete":
        monkeypatch.delenv("UNLOCK_EVAL_DATA_DIR")
    else:
        monkeypatch.setenv("UNLOCK_EVAL_DATA_DIR", "")  # empty means unset, as for the tasks
    calls = _fake_hub(monkeypatch, {"main": [{"question": f"q{i}", "answer": "#### 1"} for i in range(5)]})
    assert load_questions("gsm8k", 2) == ["q3", "q4"]
    assert calls == [("openai/gsm8k", "main", "train")]
    rows = {
        s: [{"problem": f"{s}{i}", "level": "Level 1", "type": s, "solution": "x"} for i in range(2)]
        for s in MATH_SUBJECTS
    }
    calls = _fake_hub(monkeypatch, rows)
    assert load_questions("math", 3) == ["prealgebra1", "precalculus0", "precalculus1"]
    assert calls == [("EleutherAI/hendrycks_math", s, "train") for s in MATH_SUBJECTS]


def test_offline_extraction_names_the_data_set_and_the_variable(monkeypatch):
    from unlock_eval.data.prompts import load_questions

    monkeypatch.delenv("UNLOCK_EVAL_DATA_DIR")
    with pytest.raises(ConfigError, match=r"openai/gsm8k \(main\) from the Hugging Face Hub.*UNLOCK_EVAL_DATA_DIR"):
        load_questions("gsm8k", 4)


def test_cli_reports_bad_input_in_one_line_and_never_looks_for_shared_data_itself(monkeypatch, capsys):
    from unlock_eval.cli import main

    monkeypatch.setenv("UNLOCK_EVAL_DATA_DIR", "")
    monkeypatch.chdir(REPO)  # ../shared/data exists from here
    assert main(["diagnose", "--source", "smollm2-135m-instruct", "--target", "gemma3-270m"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unlock-eval diagnose: error: cannot load openai/gsm8k (main)"), err[-2000:]
    assert "UNLOCK_EVAL_DATA_DIR" in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_does_not_hide_bugs(monkeypatch):
    from unlock_eval import cli
    from unlock_eval.methods.unlock import diagnostics

    def broken(*_, **__):
        raise ValueError("a bug, not a bad input")

    monkeypatch.setattr(diagnostics, "run_diagnosis", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["diagnose", "--source", "smollm2-135m-instruct", "--target", "gemma3-270m"])


def test_file_hash_memo_lives_in_the_cache_dir_it_is_given(tmp_path):
    from unlock_eval.cache import default_cache_dir, file_sha256

    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"abc" * 1000)
    before = (
        set((default_cache_dir() / "file-hashes").glob("*"))
        if (default_cache_dir() / "file-hashes").exists()
        else set()
    )
    digest = file_sha256(blob, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "file-hashes").glob("*.sha256"))) == 1
    after = (
        set((default_cache_dir() / "file-hashes").glob("*"))
        if (default_cache_dir() / "file-hashes").exists()
        else set()
    )
    assert after == before and digest == file_sha256(blob, tmp_path / "cache")


def test_results_folder_names_come_from_the_registry():
    from unlock_eval.model_adapters.registry import MODELS, run_name

    assert set(MODELS) == {"unlock", "weight_transfer", "logit_transfer"}
    assert run_name("unlock", "target=/x/tgt,source=/y/src,alpha=0.1") == "unlock_src_to_tgt"
    assert run_name("weight_transfer", "target=/x/tgt,source=/y/src,lam=2") == "weight_transfer_src_to_tgt"
    assert run_name("logit_transfer", "target=gemma3-270m") == "logit_transfer_gemma3-270m_to_gemma3-270m"
    assert run_name("unlock", {"target": "gemma3-270m"}) == "unlock_native_gemma3-270m"
    assert json.dumps(MODELS["unlock"].target) == '"unlock_eval.model_adapters.unlock:UnlockLM"'
