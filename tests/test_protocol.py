"""The paper's protocol: presets equal to the official code's templates, same-token endings, the extraction-set
note, and the reproduction commands of docs/reproducing.md (parsed and started with tiny models substituted)."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from unlock_eval.data.prompts import CAPABILITIES, extraction_mismatch, render

from adapter_fixtures import save_tiny
from conftest import requires_models

REPO = Path(__file__).resolve().parents[1]

# sha256 of the reference's template strings as Python evaluates them, computed from a fetched copy of the official
# code: rishabbala/Steering-Vector-Transfer @ 9988ad7ff68ce37edd91cb728d13da73b07223ff, utils.py, PROMPT_TEMPLATES
# ["general-direct"][0] (utils.py:187-191) and ["general-cot"][0] (utils.py:157-161), ast.literal_eval of each entry.
# The reference's slot is {input}; ours is {question}.
REFERENCE_SHA256 = {
    "general-direct": "8bdae380c06634810369c3d5e133970bff6bf4256f93e090c136809240daabe0",
    "general-cot": "437c50afd9b34a0a91a43ddc45a23f65bd4d634376e378802db6621bba8c82f5",
}


def _sha(template: str) -> str:
    return hashlib.sha256(template.replace("{question}", "{input}").encode("utf-8")).hexdigest()


def test_cot_preset_is_the_reference_pair_byte_for_byte():
    cot = CAPABILITIES["cot"]
    assert _sha(cot.locked_template) == REFERENCE_SHA256["general-direct"]
    assert _sha(cot.unlocked_template) == REFERENCE_SHA256["general-cot"]
    assert "9988ad7ff68ce37edd91cb728d13da73b07223ff" in cot.origin


@pytest.mark.parametrize("name", list(CAPABILITIES))
def test_every_preset_ends_both_templates_on_a_newline_and_says_where_it_comes_from(name):
    preset = CAPABILITIES[name]
    for template in (preset.locked_template, preset.unlocked_template):
        assert template.count("{question}") == 1 and template.endswith("\n")
    assert preset.locked_template != preset.unlocked_template and preset.origin


@pytest.mark.slow
@requires_models
@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "gemma3-270m"])
def test_both_templates_end_on_the_same_token_for_the_embedded_tokenizers(model):
    from unlock_eval.models import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model(model))
    question = "Janet has 3 apples and buys 5 more. How many apples does she have?"
    for name, preset in CAPABILITIES.items():
        locked = tok(render(preset.locked_template, question))["input_ids"]
        unlocked = tok(render(preset.unlocked_template, question))["input_ids"]
        assert locked[-1] == unlocked[-1], (name, tok.convert_ids_to_tokens([locked[-1], unlocked[-1]]))
    old = (
        tok("Question: x\nAnswer:")["input_ids"][-1],
        tok("Question: x\nAnswer: Let's think step by step.")["input_ids"][-1],
    )
    assert old[0] != old[1]  # the previous pair ended on different tokens: what the presets fix


def test_extraction_mismatch_names_the_tasks_and_the_set_to_use():
    assert extraction_mismatch("gsm8k", {"gsm8k_unlock", "gsm8k_cot_unlock", "my_task"}) is None
    note = extraction_mismatch("gsm8k", {"math_unlock_algebra", "agieval_math_unlock", "gsm8k_unlock"})
    assert "extract_from=gsm8k" in note and "agieval_math_unlock, math_unlock_algebra -> extract_from=math" in note
    assert extraction_mismatch("math", {"math500_unlock", "hendrycks_math_algebra"}) is None
    assert extraction_mismatch("gsm8k", {"mathqa", "agieval_sat_math_unlock"}) is None  # not MATH data
    assert "gsm8k_unlock -> extract_from=gsm8k" in extraction_mismatch("/data/mine.jsonl", {"gsm8k_unlock"})


def test_adapter_logs_the_mismatch_once(tmp_path, caplog, tiny_world):
    from lm_eval.api.instance import Instance

    from unlock_eval.model_adapters.unlock import UnlockLM

    lm = UnlockLM(
        source=tiny_world["src"],
        target=tiny_world["tgt"],
        k=2,
        n=4,
        extract_from=tiny_world["questions"],
        cache_dir=str(tmp_path / "cache"),
        device="cpu",
    )
    gen = {"until": ["\n"], "max_gen_toks": 2, "do_sample": False}
    reqs = [Instance("generate_until", {}, ("Question: hi\nAnswer:\n", gen), 0, ("math_unlock_algebra", 0, 1))]
    with caplog.at_level("WARNING", logger="lm_eval.models.unlock"):
        lm.generate_until(reqs)
        lm.generate_until(reqs)
    notes = [r.message for r in caplog.records if "task-agnostic" in r.message]
    assert len(notes) == 1 and "math_unlock_algebra -> extract_from=math" in notes[0]


# ------------------------------------------------------------------------------------------------ reproduction recipe


def _reproduction_commands() -> list[str]:
    """Each `lm_eval` and `unlock-eval sweep` command of docs/reproducing.md, sweep grids reduced to their first
    point."""
    section = (REPO / "docs" / "reproducing.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip()
            if line.startswith(("lm_eval", "unlock-eval sweep")):
                commands.append(re.sub(r"(--alphas|--ks|--ns) ([^,\s]+)\S*", r"\1 \2", line))
    return commands


def test_the_docs_give_a_command_for_each_headline_number():
    joined = "\n".join(_reproduction_commands())
    for needed in (
        "source=Qwen/Qwen1.5-14B,target=Qwen/Qwen1.5-7B",
        "--tasks gsm8k_unlock",
        "--tasks math_unlock",
        "pretrained=Qwen/Qwen1.5-7B",
        "source=Qwen/Qwen3-4B,source_locked=Qwen/Qwen3-4B-Base",
        "target=Qwen/Qwen3-14B-Base",
        "pretrained=Qwen/Qwen3-14B-Base",
        "pretrained=Qwen/Qwen3-14B,",
        "--tasks agieval_math_cot_unlock",
        "extract_from=math",
        "n=512",
        "--alphas 0.05 --ks 1",
    ):
        assert needed in joined, needed
    assert "$" not in joined


TINY = {
    "Qwen/Qwen1.5-14B": ("qwen2", 3, 32),
    "Qwen/Qwen1.5-7B": ("qwen2", 2, 48),
    "Qwen/Qwen3-4B-Base": ("llama", 2, 32),
    "Qwen/Qwen3-4B": ("llama", 2, 32),
    "Qwen/Qwen3-14B-Base": ("qwen2", 3, 48),
    "Qwen/Qwen3-14B": ("qwen2", 3, 48),
}


@pytest.mark.slow
def test_each_reproduction_command_parses_and_runs_with_tiny_models(tmp_path, lm_eval_cli, monkeypatch):
    """Hub ids swapped for tiny local models, a small n, two documents, a few tokens: the command line as printed is
    accepted by lm_eval's own parser and our adapter and runs to a results file (in this process: the `lm_eval`
    entry itself is tested across a process boundary in test_adapter)."""
    from unlock_eval.cli import main

    local = {
        hub: save_tiny(tmp_path / hub.replace("/", "_"), *shape, seed) for seed, (hub, shape) in enumerate(TINY.items())
    }
    monkeypatch.setenv("UNLOCK_EVAL_CACHE_DIR", str(tmp_path / "cache"))
    commands = _reproduction_commands()
    for i, command in enumerate(commands):
        for hub in sorted(local, key=len, reverse=True):  # Qwen/Qwen3-14B-Base before Qwen/Qwen3-14B
            command = re.sub(rf"(?<==){re.escape(hub)}(?=[,\s])", local[hub], command)
        assert "Qwen/" not in command, command
        command = command.replace("n=512", "n=8")  # the grid loops start at k=1
        command = command.replace("protocol=reference", "protocol=reference,max_new_tokens=4")  # not 4096 here
        sweep = command.startswith("unlock-eval sweep")
        argv = command.split()[2 if sweep else 1 :]
        argv += ["--limit", "2", "--gen_kwargs", "max_gen_toks=4", "--device", "cpu"]
        argv += ["--output_path", str(tmp_path / f"out{i}")]
        if sweep:
            assert main(["sweep", *argv]) == 0, command
        else:
            lm_eval_cli(*argv)
        results = [json.loads(p.read_text()) for p in (tmp_path / f"out{i}").rglob("results_*.json")]
        if sweep:  # the plain target, then the one grid point left: on the selection rows first when selecting
            rounds = 2 if "--select-on" in command else 1
            assert len(results) == 2 * rounds and (tmp_path / f"out{i}" / "report.md").is_file(), command
            methods = sorted(str(r["config"].get("unlock_eval", {}).get("method")) for r in results)
            assert methods == ["None"] * rounds + ["unlock"] * rounds
            records = [r["config"]["unlock_eval"] for r in results if r["config"].get("unlock_eval")]
            assert all(record["hyperparameters"]["protocol"] == "reference" for record in records), command
            if "source_locked=" in command:  # the post-training runs' decoding holds for the plain target too
                plain = [r["config"]["gen_kwargs"] for r in results if not r["config"].get("unlock_eval")]
                assert all(g["until"] == [] and g["max_gen_toks"] == 4 for g in plain), plain
        else:
            assert len(results) == 1, command
            if "until=[]" in command:  # the post-training plain baselines decode without stop strings
                assert results[0]["config"]["gen_kwargs"]["until"] == [], command
    assert len(commands) == 6


def test_capture_progress_names_the_template_and_the_dtype(tiny_world, tmp_path, capsys):
    from unlock_eval.cache import ArtifactCache
    from unlock_eval.data.prompts import load_questions, template_label
    from unlock_eval.methods.unlock.extractor import Extractor

    cot = CAPABILITIES["cot"]
    assert template_label(cot.unlocked_template) == "cot unlocked template"
    assert template_label("Q: {question}\nA:").startswith("template ") and len(template_label("x {question}")) == 17
    ex = Extractor(ArtifactCache(tmp_path), dtype="auto", progress=True)
    ex.states(tiny_world["src"], cot.locked_template, load_questions(tiny_world["questions"], 4))
    assert f"capture {tiny_world['src']} (cot locked template, float32)" in capsys.readouterr().err
