"""`lm_eval --model unlock` on tiny saved models: CLI runs, disk cache, argument errors, --use_cache isolation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unlock_eval.data.prompts import CAPABILITIES
from unlock_eval.errors import ConfigError

from conftest import requires_data


@pytest.fixture
def world(tiny_world):
    """The session's tiny models (conftest.tiny_world): llama source, gpt2 target, questions, tasks."""
    return tiny_world


def unlock_args(world, cache, **extra):
    args = {
        "source": world["src"],
        "target": world["tgt"],
        "alpha": 0.5,
        "k": 4,
        "n": 8,
        "extract_from": world["questions"],
        "cache_dir": str(cache),
        "device": "cpu",
    }
    args.update(extra)
    return args


def make_lm(world, cache, **extra):
    from unlock_eval.model_adapters.unlock import UnlockLM

    return UnlockLM(**unlock_args(world, cache, **extra))


def lm_eval_process(*args):
    """`python -m lm_eval ARGS` in a fresh process: only where the process boundary is the subject (~10 s each)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lm_eval", *args], capture_output=True, text=True, env=env, timeout=600
    )


def newest_results(folder: Path) -> dict:
    return json.loads(sorted(folder.glob("results_*.json"))[-1].read_text())


def test_cli_run_records_config_and_second_run_skips_extraction(world, tmp_path, lm_eval_cli):
    from unlock_eval.cli import main

    cache, out = tmp_path / "cache", tmp_path / "out"
    model_args = ",".join(f"{k}={v}" for k, v in unlock_args(world, cache).items() if k != "device")
    argv = ["--model", "unlock", "--model_args", model_args, "--tasks", "tiny_unlock_gen,tiny_unlock_mc"]
    argv += ["--include_path", world["tasks"], "--output_path", str(out), "--log_samples", "--device", "cpu"]
    for attempt in range(2):  # the second time through `unlock-eval run`, the wrapper with the same flags
        if attempt == 0:
            lm_eval_cli(*argv)  # in this process (a fresh `lm_eval` process: test_cli_argument_error_is_one_line)
        else:
            assert main(["run", *argv]) == 0
        folder = out / "unlock_src_to_tgt"  # named from source/target, not lm-eval's random name
        record = newest_results(folder)["config"]["unlock_eval"]
        assert record["schema_version"] == 1 and record["method"] == "unlock"
        from unlock_eval import __version__

        assert record["unlock_eval_version"] == __version__  # the report's provenance names the tool that ran it
        hp, info = record["hyperparameters"], record["details"]
        assert hp["alpha"] == 0.5 and hp["k"] == 4 and hp["n"] == 8 and hp["layers"] == "all"
        assert record["models"]["source"]["spec"] == world["src"] and record["models"]["target"]["identity"]
        assert record["extra_forward_passes_per_token"] == 0 and record["setup_peak_rss_mb"] > 50
        assert info["layer_map_resolved"] == [0, 1, 3]
        assert set(info["artifacts"]) >= {"source_key", "subspace_map", "target_key_checksum"}
        if attempt == 0:
            assert info["extraction_forward_passes"] == 3  # source locked, source unlocked, target locked
        else:
            assert info["extraction_forward_passes"] == 0


def test_warm_start_and_changed_alpha_k_mode_run_no_extraction_pass(world, tmp_path):
    cold = make_lm(world, tmp_path)
    assert cold.steering.extraction_forward_passes == 3
    assert cold.steering.artifacts.models_loaded == [world["src"]]  # target reused from HFLM, source loaded once
    for extra in ({}, {"alpha": 0.2}, {"mode": "additive_all"}, {"k": 2}, {"layers": "0-1"}):
        warm = make_lm(world, tmp_path, **extra)
        assert warm.steering.extraction_forward_passes == 0, extra
        assert warm.steering.artifacts.models_loaded == [], extra  # the source is not even loaded
    assert (
        make_lm(world, tmp_path, k=2).steering.artifacts.hashes["subspace_map"]
        != cold.steering.artifacts.hashes["subspace_map"]
    )
    native = make_lm(world, tmp_path, source=world["tgt"])
    assert native.steering.artifacts.native and native.steering.artifacts.subspace_map is None


def test_alpha_zero_matches_plain_hflm_and_steering_changes_outputs(world, tmp_path):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    plain = HFLM(pretrained=world["tgt"], device="cpu", dtype="float32")
    zero = make_lm(world, tmp_path, alpha=0.0)
    strong = make_lm(world, tmp_path, alpha=2.0)
    ll = [Instance("loglikelihood", {}, ("Question: what is 2+2?\nAnswer:", " four"), i) for i in range(1)]
    ll += [Instance("loglikelihood", {}, ("Question: hi\nAnswer:", " yes it is"), 1)]
    gen = [
        Instance(
            "generate_until",
            {},
            ("Question: what is 2+2?\nAnswer:", {"until": ["\n\n"], "max_gen_toks": 6, "do_sample": False}),
            0,
        )
    ]
    base_ll, base_gen = plain.loglikelihood(ll), plain.generate_until(gen)
    assert [x[0] for x in zero.loglikelihood(ll)] == pytest.approx([x[0] for x in base_ll], abs=1e-4)
    assert zero.generate_until(gen) == base_gen
    assert strong.loglikelihood(ll)[0][0] != pytest.approx(base_ll[0][0], abs=1e-3)


def test_loglikelihood_is_steered_at_the_end_of_the_context(world, tmp_path):
    lm = make_lm(world, tmp_path)
    context, continuation = lm.tok_encode("Question: x?\nAnswer:"), lm.tok_encode(" yes")
    seen = []
    original = lm._model_call

    def spy(inps, **kw):
        seen.append(lm._positions_for(inps))
        return original(inps, **kw)

    lm._model_call = spy
    lm._loglikelihood_tokens([(("Question: x?\nAnswer:", " yes"), context, continuation)])
    assert seen and seen[0].tolist() == [len(context) - 1]


def test_use_cache_cannot_return_unsteered_or_differently_steered_answers(world, tmp_path):
    from lm_eval.api.instance import Instance
    from lm_eval.api.model import CachingLM, hash_args

    req = Instance(
        "generate_until", {}, ("Question: hi\nAnswer:", {"until": ["\n\n"], "max_gen_toks": 4, "do_sample": False}), 0
    )
    db = str(tmp_path / "lm_cache.db")
    from sqlitedict import SqliteDict

    plain_table = SqliteDict(db, autocommit=True)  # what an unsteered `--model hf --use_cache` run leaves
    plain_table[hash_args("generate_until", req.args)] = "UNSTEERED-CACHED-ANSWER"
    plain_table.close()
    steered = CachingLM(make_lm(world, tmp_path / "c"), db)
    first = steered.generate_until([req])
    assert first != ["UNSTEERED-CACHED-ANSWER"]
    again = CachingLM(make_lm(world, tmp_path / "c"), db)  # same steering: served from its own table
    again.lm.generate_until = lambda *_: pytest.fail("same steering config should hit the cache")
    assert again.generate_until([req]) == first
    other = CachingLM(make_lm(world, tmp_path / "c", alpha=0.05), db)
    assert other.dbdict.tablename != again.dbdict.tablename
    assert hash_args("generate_until", req.args) not in other.dbdict


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"alpah": 0.1}, "unknown model_args for --model unlock: alpah. Valid keys: target, source"),
        ({"alpha": float("inf")}, "alpha=inf: expected a finite number"),
        ({"alpha": "strong"}, "alpha='strong': expected a finite number"),
        ({"k": 9}, "k=9 exceeds the number of prompts n=8"),
        ({"k": 2.5}, "k=2.5: expected an integer >= 1"),
        ({"mode": "last"}, "mode='last': allowed values are prefill_last, additive_all"),
        ({"aggregator": "median"}, "aggregator='median': allowed values are mean, pca"),
        ({"capability": "math"}, "capability='math': allowed values are cot"),
        ({"extract_from": "/nonexistent/q.jsonl"}, "extract_from='/nonexistent/q.jsonl': file not found"),
        (
            {"extract_from": "gsm9k"},
            "extract_from='gsm9k': allowed values are gsm8k, math, arith, agieval_math_test, agieval_sat_math_test, "
            "math500_test or a path",
        ),
        ({"locked_template": "no slot here"}, "locked_template must be a string containing the slot '{question}'"),
        ({"pretrained": "x"}, "takes target=... (and source=...), not pretrained"),
        ({"5]": ""}, "write lists as 3;5;7 or 3-10"),
        ({"layers": "7"}, "layers=[7]: the target has 3 layers"),
        ({"aggregator": "pca", "k": 8}, "k=8 with centring (aggregator=pca) needs k <= n - 1 = 7"),
        ({"peft": "some/adapter"}, "peft: not supported with --model unlock"),
        ({"dtype": "int8"}, "dtype='int8': allowed values are float32"),
        ({"locked_template": "Q: {question}", "unlocked_template": "Q: {question}"}, "the key would be zero"),
        ({"layer_map": [0, 1]}, "explicit layer_map must list 3 source layers"),
        ({"layer_map": "nearest"}, "layer_map='nearest': allowed names are relative_depth"),
        ({"layers_path": "transformer.nope"}, "layers_path='transformer.nope' does not name a non-empty nn.ModuleList"),
        ({"source_layers_path": "model.nope"}, "source_layers_path='model.nope' does not name a non-empty"),
    ],
)
def test_argument_errors_name_the_key(world, tmp_path, extra, message):
    with pytest.raises(ConfigError) as err:
        make_lm(world, tmp_path, **extra)
    assert message in str(err.value)


def test_layers_path_is_a_model_argument(world, tmp_path):
    lm = make_lm(world, tmp_path, layers_path="transformer.h", source_layers_path="model.layers")
    assert lm.get_model_info()["unlock_eval"]["hyperparameters"]["layers_path"] == "transformer.h"
    assert lm.steering.extraction_forward_passes == 3


def test_missing_target_and_unknown_model(world, tmp_path):
    from unlock_eval.model_adapters.unlock import UnlockLM

    with pytest.raises(ConfigError, match="missing target="):
        UnlockLM(source=world["src"], extract_from=world["questions"])
    with pytest.raises(ConfigError, match="target: model './nope': not a model directory"):
        make_lm(world, tmp_path, target="./nope")


def test_model_induced_pair_defaults_to_one_template_and_dtype_is_canonical(world, tmp_path):
    from unlock_eval.methods.unlock.spec import UnlockSpec
    from unlock_eval.model_adapters.arguments import parse_model_args

    cfg, hf = parse_model_args(
        UnlockSpec, "unlock", unlock_args(world, tmp_path, source_locked=world["tgt"], dtype="bf16")
    )
    cot = CAPABILITIES["cot"]
    assert cfg.locked_template == cfg.unlocked_template == cot.locked_template  # one template on both checkpoints
    assert (cfg.capability, cfg.shared_template, hf["dtype"]) == ("cot", "locked", "bfloat16")
    args = unlock_args(world, tmp_path, source_locked=world["tgt"], capability="cot", shared_template="unlocked")
    cfg, _ = parse_model_args(UnlockSpec, "unlock", args)
    assert cfg.locked_template == cfg.unlocked_template == cot.unlocked_template  # the paper's post-training runs
    cfg, _ = parse_model_args(UnlockSpec, "unlock", unlock_args(world, tmp_path, layer_map=[0, 2, 3]))
    assert cfg.layer_map == [0, 2, 3] and cfg.capability == "cot"
    assert (cfg.locked_template, cfg.unlocked_template) == (cot.locked_template, cot.unlocked_template)
    with pytest.raises(ConfigError, match="shared_template applies to two checkpoints"):
        parse_model_args(UnlockSpec, "unlock", unlock_args(world, tmp_path, shared_template="locked"))
    with pytest.raises(ConfigError, match="shared_template='both': allowed values are locked, unlocked"):
        parse_model_args(
            UnlockSpec, "unlock", unlock_args(world, tmp_path, source_locked=world["tgt"], shared_template="both")
        )


def test_model_induced_key_from_two_checkpoints(world, tmp_path):
    lm = make_lm(world, tmp_path, source_locked=world["src_base"])
    record = lm.get_model_info()["unlock_eval"]
    info = record["hyperparameters"]
    assert record["method"] == "unlock" and record["models"]["source_locked"]["spec"] == world["src_base"]
    assert info["locked_template"] == info["unlocked_template"]
    assert lm.steering.extraction_forward_passes == 3  # base and tuned source on one template, target on it too
    with pytest.raises(ConfigError, match="two checkpoints of one architecture"):
        make_lm(world, tmp_path, source_locked=world["tgt"], source=world["src"])


def test_padding_rows_match_their_context_end_without_scanning_the_whole_row(world, tmp_path):
    import torch

    lm = make_lm(world, tmp_path)
    lm._score_rows = {(5, 6, 7): 1, (5, 6, 7, 0): 3}
    rows = torch.tensor([[5, 6, 7, 0, 0, 0], [5, 6, 7, 0, 0, 9], [8, 8, 8, 8, 8, 8]])
    assert lm._positions_for(rows).tolist() == [3, 5, 5]  # longest match first; no match -> last position


def test_layers_syntax(world):
    from unlock_eval.params import as_index_list

    assert as_index_list("layers", "3-5") == [3, 4, 5]
    assert as_index_list("layers", "1;4;6") == [1, 4, 6]
    assert as_index_list("layers", [2, 3.0]) == [2, 3]
    assert as_index_list("layers", 4.0) == [4]
    with pytest.raises(ConfigError, match="layers='5-3': empty range"):
        as_index_list("layers", "5-3")


@pytest.mark.process
def test_cli_argument_error_is_one_line(world, tmp_path):
    """The one-line error hook across the process boundary: a fresh `python -m lm_eval` knows `--model unlock` from
    the start-up hook alone and prints our ConfigError as one line (the other refusals are checked in-process)."""
    proc = lm_eval_process(
        "--model",
        "unlock",
        "--model_args",
        f"target={world['tgt']},alpah=0.1",
        "--tasks",
        "tiny_unlock_gen",
        "--include_path",
        world["tasks"],
    )
    assert proc.returncode != 0
    assert "lm_eval: error: unknown model_args for --model unlock: alpah" in proc.stderr
    assert "Traceback" not in proc.stderr


CONCURRENT = """
import json, sys
from unlock_eval.model_adapters.unlock import UnlockLM
lm = UnlockLM(**json.loads(sys.argv[1]))
print("PASSES", lm.steering.extraction_forward_passes)
"""


@pytest.mark.process
def test_two_processes_starting_at_once_compute_once(world, tmp_path):
    args = json.dumps(unlock_args(world, tmp_path / "shared_cache"))
    code = CONCURRENT
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    passes = sorted(int(o[0].split("PASSES")[1]) for o in outs)
    assert passes == [0, 3]  # one built everything, the other waited on the lock and loaded it
    waits = [line for _, err in outs for line in err.splitlines() if "waiting for" in line]
    assert all("the key and map of" in line and "another process is building it" in line for line in waits), waits


def test_registration_is_lazy_cheap_and_keeps_builtin_models():
    probe = (
        "import lm_eval.models; from lm_eval.api.registry import model_registry as r; "
        "import lm_eval.tasks.manager as m; "
        "print('unlock' in r, 'hf' in r, 'steered' in r, getattr(m.TaskManager, '_unlock_eval_patched', False))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "True", "True"]  # our models, lm-eval's own, our task folder in every TaskManager
    before = subprocess.run(
        [sys.executable, "-c", "import sys; print('lm_eval' in sys.modules, 'torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert before == ["False", "False"]  # nothing heavy imported at interpreter start
    trace = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True).stderr
    line = next(l for l in trace.splitlines() if l.rstrip().endswith("unlock_eval.model_adapters.registration"))
    assert int(line.split("|")[1]) < 10_000  # cumulative microseconds


def test_tasks_list_shows_our_tasks_without_include_path(lm_eval_index):
    """What `lm_eval ls tasks` lists, without --include_path: the TaskManager the start-up hook patched holds our tasks
    and groups next to lm-eval's (that the patch is in place in a fresh interpreter: test_registration_is_lazy_cheap_
    and_keeps_builtin_models). Not `ls` itself: it re-reads every task YAML for its table (~5 s)."""
    from lm_eval.tasks import TaskManager

    from unlock_eval.model_adapters.registration import tasks_dir

    manager = TaskManager()
    assert {"gsm8k_unlock", "arith_unlock", "gsm8k"} <= set(manager.all_subtasks)
    assert {"math_unlock", "mmlu"} <= set(manager.all_groups)
    assert Path(manager._index["gsm8k_unlock"].yaml_path).resolve().parent == tasks_dir()


def test_parallelize_with_offloaded_layers_steers_like_a_single_device_run(world, tmp_path):
    """parallelize=True on a machine without GPUs offloads the weights (meta parameters): the steering
    vectors must follow the device the hidden states are on, and the answers must not change."""
    from lm_eval.api.instance import Instance

    reqs = [
        Instance(
            "generate_until",
            {},
            ("Question: hi\nAnswer:", {"until": ["\n\n"], "max_gen_toks": 5, "do_sample": False}),
            0,
        )
    ]
    ll = [Instance("loglikelihood", {}, ("Question: hi\nAnswer:", " yes"), 0)]
    single = make_lm(world, tmp_path, alpha=1.0)
    spread = make_lm(world, tmp_path, alpha=1.0, parallelize=True, offload_folder=str(tmp_path / "offload"))
    assert any(p.device.type == "meta" for p in spread.model.parameters())
    assert spread.steering.fingerprint() == single.steering.fingerprint()
    assert spread.generate_until(reqs) == single.generate_until(reqs)
    assert spread.loglikelihood(ll)[0][0] == pytest.approx(single.loglikelihood(ll)[0][0], abs=1e-4)


@pytest.mark.slow
@pytest.mark.process
def test_torchrun_two_processes_one_extracts_the_other_waits(world, tmp_path):
    """`torchrun`/`accelerate launch` start one lm_eval per rank: exactly one of them runs extraction passes."""
    import re
    import socket

    with socket.socket() as sock:  # a free port on this machine for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ",".join(f"{k}={v}" for k, v in unlock_args(world, tmp_path / "cache").items() if k != "device")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            "-m",
            "lm_eval",
            "--model",
            "unlock",
            "--model_args",
            args,
            "--tasks",
            "tiny_unlock_gen",
            "--include_path",
            world["tasks"],
            "--device",
            "cpu",
            "--output_path",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    passes = sorted(int(n) for n in re.findall(r"ready in [\d.]+ s: (\d+) extraction forward passes", proc.stderr))
    assert passes == [0, 3], proc.stderr[-3000:]


def _twin(path: Path, of: str, noise: float) -> str:
    """A copy of a saved model with its weights nudged: another identity, nearly the same representations."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(of)
    with torch.no_grad():
        g = torch.Generator().manual_seed(11)
        for p in model.parameters():
            p.add_(noise * torch.randn(p.shape, generator=g))
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(of).save_pretrained(path)
    return str(path)


def test_results_record_diagnostics_and_layers_aligned_steers_the_passing_layers(world, tmp_path):
    twin = _twin(tmp_path / "twin", world["tgt"], 1e-3)  # a source the target is a near-copy of
    lm = make_lm(world, tmp_path, source=twin, k=2)
    diag = lm.run_record.details["diagnostics"]
    assert len(diag["layers"]) == 3 and "held-out R²" in diag["verdict"]
    assert diag["layers"][0]["cos"] is None  # the target's unlocked states were never captured: no native key yet
    assert "model-induced" not in diag["verdict"] and "the target's own key was not captured" in diag["verdict"]
    assert lm.run_record.details["layers_resolved"] == "all"

    aligned = make_lm(world, tmp_path, source=twin, k=2, layers="aligned")
    assert aligned.run_record.details["extraction_forward_passes"] > 0  # it captured the target's own key
    rows = aligned.run_record.details["diagnostics"]["layers"]
    assert all(r["heldout_r2_k"] > 0.9 and r["sign"] == "agrees" for r in rows)  # a near-copy maps near-exactly
    assert aligned.run_record.details["layers_resolved"] == [0, 1, 2] == aligned.steering.layers
    assert aligned.run_record.hyperparameters["layers"] == "aligned"
    assert (
        aligned.steering.fingerprint() != make_lm(world, tmp_path, source=twin, k=2, layers="0").steering.fingerprint()
    )

    # world["src"]: another family with random weights; its map predicts no held-out target state
    with pytest.raises(ConfigError, match=r"layers=aligned: no target layer passes .*held-out R² > 0 in layers none"):
        make_lm(world, tmp_path, k=2, layers="aligned")
    with pytest.raises(ConfigError, match="layers=aligned selects the layers where a transferred key"):
        make_lm(world, tmp_path, source=world["tgt"], layers="aligned")


def test_generation_limits_apply_to_every_request_and_keep_their_own_cache_table(world, tmp_path, monkeypatch):
    from lm_eval.api.instance import Instance
    from lm_eval.api.model import CachingLM, hash_args

    gen = {"until": ["e"], "max_gen_toks": 3, "do_sample": False}
    req = Instance("generate_until", {}, ("Question: hi\nAnswer:", gen), 0)
    task = make_lm(world, tmp_path, alpha=0.0)
    limited = make_lm(world, tmp_path, alpha=0.0, max_new_tokens=12, stop_strings="none")
    import lm_eval.models.huggingface as hf

    seen, saved = [], hf.HFLM.generate_until  # HFLM's: what the adapter hands the requests to

    def spy(self, requests, disable_tqdm=False):
        seen.extend(r.args[1] for r in requests)
        return saved(self, requests, disable_tqdm)

    monkeypatch.setattr(hf.HFLM, "generate_until", spy)
    short, long = task.generate_until([req]), limited.generate_until([req])
    assert seen[-1] == {"until": [], "max_gen_toks": 12, "do_sample": False} and req.args[1] == gen  # a copy
    assert len(long[0]) > len(short[0])
    assert task.cache_table != limited.cache_table  # the limits change the answers: their own --use_cache table
    cached = CachingLM(
        make_lm(world, tmp_path, alpha=0.0, max_new_tokens=12, stop_strings="none"), str(tmp_path / "db")
    )
    assert cached.generate_until([req]) == long
    assert hash_args("generate_until", req.args) in cached.dbdict  # stored under the task's request, found again


def test_dtype_auto_is_the_checkpoints_own_and_every_stage_is_recorded(world, tmp_path):
    from transformers import AutoModelForCausalLM

    bf16 = tmp_path / "tgt_bf16"
    AutoModelForCausalLM.from_pretrained(world["tgt"], dtype="bfloat16").save_pretrained(bf16)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (Path(world["tgt"]) / name).is_file():
            (bf16 / name).write_bytes((Path(world["tgt"]) / name).read_bytes())
    lm = make_lm(world, tmp_path / "c", target=str(bf16), align_dtype="float32")
    assert str(next(lm.model.parameters()).dtype) == "torch.bfloat16"
    dtypes = lm.run_record.to_dict()["details"]["dtypes"]
    assert dtypes == {
        "evaluation": "bfloat16",
        "key": {world["src"]: "float32"},  # the source's checkpoint is float32
        "alignment": {world["src"]: "float32", str(bf16): "float32"},
    }
    assert lm.run_record.to_dict()["details"]["extraction_overlap"] is None


@requires_data
def test_extracting_from_test_documents_is_recorded_and_warned(world, tmp_path, caplog):
    from lm_eval.api.instance import Instance

    lm = make_lm(world, tmp_path, extract_from="agieval_math_test")
    overlap = lm.run_record.to_dict()["details"]["extraction_overlap"]
    assert overlap["extract_from"] == "agieval_math_test" and overlap["split"] == "test"
    assert "last n=8 test documents of agieval_math" in overlap["note"]
    gen = {"until": ["\n"], "max_gen_toks": 2, "do_sample": False}
    reqs = [Instance("generate_until", {}, ("Q: hi\nA:", gen), 0, ("agieval_math_cot_unlock", 0, 1))]
    with caplog.at_level("WARNING", logger="lm_eval.models.unlock"):
        lm.generate_until(reqs)
    assert any("takes the key's prompts from the test documents that agieval_math_cot_unlock score" in r.message
               for r in caplog.records)  # fmt: skip
    assert make_lm(world, tmp_path).run_record.to_dict()["details"]["extraction_overlap"] is None


def test_lm_evals_chat_guess_is_about_the_target_not_an_instruct_source(world, tmp_path, caplog):
    import logging

    import lm_eval.evaluator  # noqa: F401 - the start-up hook filters its logger once it is imported

    from unlock_eval.methods.unlock.spec import UnlockSpec
    from unlock_eval.model_adapters.arguments import parse_model_args

    with caplog.at_level("WARNING"):
        logging.getLogger("lm_eval.evaluator").warning("pretrained=None appears to be an instruct or chat variant")
        logging.getLogger("lm_eval.evaluator").warning("pretrained=my-chat-model appears to be an instruct variant")
        parse_model_args(UnlockSpec, "unlock", unlock_args(world, tmp_path, source="smollm2-135m-instruct"))
        parse_model_args(UnlockSpec, "unlock", unlock_args(world, tmp_path, target="org/some-chat-model"))
    lines = [r.getMessage() for r in caplog.records]
    assert not any(line.startswith("pretrained=None") for line in lines)  # ours take target=, not pretrained=
    assert any(line.startswith("pretrained=my-chat-model") for line in lines)  # lm-eval's own models keep it
    assert [line for line in lines if line.startswith("target=")] == [
        "target=org/some-chat-model appears to be an instruct or chat variant: the unlock tasks send the bare prompt; "
        "pass --apply_chat_template to lm_eval if the target needs its chat template"
    ]
