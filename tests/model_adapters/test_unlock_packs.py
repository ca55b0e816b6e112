"""`--model unlock` with key=PATH (capability packs) on tiny saved models: the answers of the run that made the pack
with no source and no extraction data, targets checked, composition, alpha_profile, record and --use_cache tables."""

import json
import shutil

import pytest
import torch
from lm_eval.api.instance import Instance

from unlock_eval.cache import sha256_of as file_sha256
from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.pack import CapabilityPack

from adapter_fixtures import save_tiny

GEN = {"until": ["\n\n"], "max_gen_toks": 8, "do_sample": False}
PROMPTS = ["Question: what is one plus two\nAnswer:", "Question: name a red fruit\nAnswer:"]


@pytest.fixture(scope="module")
def made(tiny_world, tmp_path_factory):
    """A pack made from a copy of the tiny source (and the questions), both deleted afterwards: a run with the pack
    cannot reach them."""
    from unlock_eval.experiments.packs import pack_from_model_args

    root = tmp_path_factory.mktemp("packs")
    source = shutil.copytree(tiny_world["src"], root / "source")
    questions = shutil.copy(tiny_world["questions"], root / "questions.jsonl")
    args = {"source": str(source), "target": tiny_world["tgt"], "k": 4, "n": 8, "extract_from": str(questions),
            "cache_dir": str(root / "cache")}  # fmt: skip
    pack = root / "cot.safetensors"
    pack_from_model_args(",".join(f"{k}={v}" for k, v in {**args, "device": "cpu"}.items())).save(pack)
    lm = make_lm(**args, alpha=0.5)
    answers = generate(lm), score(lm)
    fingerprint = lm.steering.fingerprint()
    del lm
    shutil.rmtree(source)
    (root / "questions.jsonl").unlink()
    return {"pack": str(pack), "answers": answers, "fingerprint": fingerprint, "root": root, "args": args}


def make_lm(**kwargs):
    from unlock_eval.model_adapters.unlock import UnlockLM

    return UnlockLM(device="cpu", **kwargs)


def with_pack(made, tiny_world, **extra):
    args = {"target": tiny_world["tgt"], "key": made["pack"], "cache_dir": str(made["root"] / "cache")}
    return make_lm(**{**args, **extra})


def generate(lm):
    return lm.generate_until([Instance("generate_until", {}, (p, dict(GEN)), i) for i, p in enumerate(PROMPTS)])


def score(lm):
    requests = [Instance("loglikelihood", {}, (p, " three"), i) for i, p in enumerate(PROMPTS)]
    return [ll for ll, _ in lm.loglikelihood(requests)]


def test_key_gives_exactly_the_answers_of_the_run_that_made_it(made, tiny_world):
    lm = with_pack(made, tiny_world, alpha=0.5)
    assert (generate(lm), score(lm)) == made["answers"]  # generation and loglikelihood, to the last bit
    record = lm.run_record.to_dict()
    assert record["method"] == "unlock" and record["models"]["source"]["spec"].endswith("source")
    details, hyper = record["details"], record["hyperparameters"]
    assert details["packs"][0]["sha256"] == file_sha256(made["pack"]) and details["packs"][0]["weight"] == 1.0
    assert details["extraction_forward_passes"] == 0 and details["models_loaded_for_extraction"] == []
    assert hyper["k"] == 4 and hyper["n"] == 8 and hyper["key"] == [made["pack"]] and hyper["alpha"] == 0.5
    assert details["layer_map_resolved"] == [0, 1, 3] and details["diagnostics"]["verdict"]
    # its own --use_cache table, apart from the run that made the pack
    assert lm.steering.fingerprint() != made["fingerprint"]


def test_alpha_mode_and_layers_are_chosen_at_run_time(made, tiny_world):
    base = with_pack(made, tiny_world, alpha=0.5)
    other = with_pack(made, tiny_world, alpha=0.5, mode="additive_all", layers="2")
    assert generate(other) != generate(base)
    assert other.steering.layers == [2] and other.run_record.hyperparameters["mode"] == "additive_all"


def test_composition_with_itself_at_half_weights_is_the_pack(made, tiny_world):
    pack = made["pack"]
    composed = with_pack(made, tiny_world, alpha=0.5, key=f"{pack};{pack}", key_weights="0.5;0.5")
    assert (generate(composed), score(composed)) == made["answers"]
    record = composed.run_record.to_dict()
    assert [p["weight"] for p in record["details"]["packs"]] == [0.5, 0.5]
    assert record["hyperparameters"]["key_weights"] == [0.5, 0.5]
    doubled = with_pack(made, tiny_world, alpha=0.5, key=f"{pack};{pack}")  # 1 + 1: twice the strength
    assert generate(doubled) == generate(with_pack(made, tiny_world, alpha=1.0))


def test_alpha_profile_flat_is_the_scalar_and_a_profile_is_recorded(made, tiny_world):
    flat = with_pack(made, tiny_world, alpha=0.5, alpha_profile="1;1;1")
    assert (generate(flat), score(flat)) == made["answers"]
    ramp = with_pack(made, tiny_world, alpha=0.5, alpha_profile="ramp_up")
    assert ramp.run_record.hyperparameters["alpha_profile"] == "ramp_up"
    assert (
        ramp.steering.fingerprint() != flat.steering.fingerprint() != with_pack(made, tiny_world).steering.fingerprint()
    )
    with pytest.raises(ConfigError, match="alpha_profile: 2 factors given; the target has 3 decoder layers"):
        with_pack(made, tiny_world, alpha_profile="1;1")


def test_a_pack_for_another_target_is_refused_in_one_line(made, tiny_world, tmp_path):
    twin = save_tiny(tmp_path / "twin", "gpt2", 3, 48, 7)  # the target's shape, other weights
    with pytest.raises(ConfigError, match=r"made for target .*tgt .* this run's target .*twin is another model") as e:
        with_pack(made, tiny_world, target=twin)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"key={made['pack']}:")
    assert with_pack(made, tiny_world, target=twin, key_target_check="shape").steering.layers is None
    with pytest.raises(ConfigError, match="this pack steers 3 decoder layers; target .*src_base has 4"):
        with_pack(made, tiny_world, target=tiny_world["src_base"], key_target_check="shape")
    wide = save_tiny(tmp_path / "wide", "gpt2", 3, 64, 7)
    with pytest.raises(ConfigError, match="hidden size 48; target .*wide has 64"):
        with_pack(made, tiny_world, target=wide, key_target_check="shape")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"source": "x"}, "source: fixed by the capability pack in key="),
        ({"n": "8", "k": "4"}, "k, n: fixed by the capability pack"),
        ({"key": "key.pt"}, "key=key.pt: a pickle file name"),
        ({"key_weights": "0.5"}, "key_weights: 1 weights for 2 packs"),
        ({"arithmetic": "model", "key_weights": "1;1"}, "composing packs .* needs arithmetic=float32"),
        ({"layers": "aligned"}, "layers=aligned: no target layer passes"),
    ],
)
def test_argument_errors_with_a_pack(made, tiny_world, extra, message):
    args = {"key": f"{made['pack']};{made['pack']}"} if "key_weights" in extra else {}
    with pytest.raises(ConfigError, match=message):
        with_pack(made, tiny_world, **{**args, **extra})


def test_use_cache_keeps_pack_runs_apart(made, tiny_world, tmp_path, lm_eval_cli):
    """Through lm_eval: the results folder is named after the pack, and each pack configuration has its own table."""
    import sqlite3

    cache_db = tmp_path / "answers"
    out = tmp_path / "out"
    common = ["--tasks", "tiny_unlock_gen", "--include_path", tiny_world["tasks"], "--device", "cpu",
              "--use_cache", str(cache_db), "--output_path", str(out)]  # fmt: skip
    base = f"target={tiny_world['tgt']},key={made['pack']},alpha=0.5,cache_dir={made['root'] / 'cache'}"
    lm_eval_cli("--model", "unlock", "--model_args", base, *common)
    lm_eval_cli("--model", "unlock", "--model_args", base + ",alpha_profile=1;1;0", *common)
    tables = set()
    for db in tmp_path.glob("answers*"):
        with sqlite3.connect(db) as conn:
            tables |= {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert len({t for t in tables if t.startswith("unlock_")}) == 2
    results = sorted((out / "unlock_pack_cot_to_tgt").glob("results_*.json"))
    assert len(results) == 2
    record = json.loads(results[0].read_text())["config"]["unlock_eval"]
    assert record["details"]["packs"][0]["path"] == made["pack"]
    from unlock_eval.reports import report

    rows = report([out]).rows  # a list-valued setting is one table cell, as typed
    assert sorted(str(row.hyper.get("alpha_profile")) for row in rows) == ["1;1;0", "None"]


def test_packs_in_python(made):
    pack = CapabilityPack.load(made["pack"])
    assert pack.num_layers == 3 and pack.hidden_size == 48 and torch.all(pack.target_norms > 0)
    assert pack.provenance["extraction"]["n"] == 8 and pack.provenance["hyperparameters"]["k"] == 4


def test_pack_arguments_without_a_pack_are_refused(tiny_world):
    from unlock_eval.methods.unlock.spec import UnlockSpec

    with pytest.raises(ConfigError, match="key_target_check=shape: applies to a capability pack given in key="):
        UnlockSpec(target=tiny_world["tgt"], key_target_check="shape")
    with pytest.raises(ConfigError, match="key_weights: 2 weights for 0 packs"):
        UnlockSpec(target=tiny_world["tgt"], key_weights="0.5;0.5")
