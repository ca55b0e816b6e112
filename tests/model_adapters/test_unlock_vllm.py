"""`--model unlock` with backend=vllm on the embedded pair (vllm-cpu, fp32): the HF backend's answers and scores, the
record, share_alphas through lm-eval's cache, and every refusal before a model loads."""

import multiprocessing
import os

import pytest

from unlock_eval.errors import ConfigError

pytestmark = pytest.mark.xdist_group("vllm")  # one worker starts the vLLM engines (tests/conftest.py)

PAIR = {"source": "smollm2-135m-instruct", "target": "gemma3-270m", "alpha": 0.1, "dtype": "float32"}
DOCS = 12


def unlock(**extra):
    from unlock_eval.model_adapters.unlock import UnlockLM

    return UnlockLM(**{**PAIR, **extra})


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"data_parallel_size": 2}, "data_parallel_size>1"),
        ({"pipeline_parallel_size": 2}, "pipeline_parallel_size>1"),
        ({"enforce_eager": "False"}, "enforce_eager=False"),
        ({"worker_extension_cls": "x.Y"}, "worker_extension_cls"),
        ({"lora_local_path": "/tmp/lora"}, "lora_local_path"),
        ({"parallelize": True}, "unknown model_args for --model unlock: parallelize"),
        ({"backend": "tgi"}, "backend='tgi': allowed values are hf, vllm"),
    ],
)
def test_unsupported_combinations_are_one_line_before_any_model_loads(extra, words, monkeypatch):
    pytest.importorskip("vllm", exc_type=ImportError)
    monkeypatch.setenv("UNLOCK_EVAL_CACHE_DIR", "/nonexistent/never-created")  # a load would need it
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace("[", r"\[")) as info:
        unlock(**{"backend": "vllm", **extra})
    assert "\n" not in str(info.value)
    assert not multiprocessing.active_children()


def test_the_v2_model_runner_is_refused(monkeypatch):
    pytest.importorskip("vllm", exc_type=ImportError)
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "1")
    with pytest.raises(ConfigError, match="V1 model runner"):
        unlock(backend="vllm")


@pytest.fixture(scope="module")
def backends(embedded_pair, tiny_world):
    pytest.importorskip("vllm", exc_type=ImportError)
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    hf = unlock(batch_size=8)
    vl = unlock(backend="vllm", max_model_len=1024, batch_size="auto")
    yield {"hf": hf, "vllm": vl, "tasks": tiny_world["tasks"]}
    del vl, hf


def evaluate(lm, tasks, include=None, **kwargs):
    import lm_eval
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=TaskManager(include_path=include) if include else None,
        log_samples=True,
        **kwargs,
    )


def answers(results, task):
    return [s["resps"][0][0] for s in sorted(results["samples"][task], key=lambda s: s["doc_id"])]


@pytest.mark.slow
def test_generation_agrees_with_the_hf_backend(backends, lm_eval_index):
    """Greedy, fp32, the same steered key: report how many answers are identical (vLLM's kernels are not HF's, so a
    near-tie can go the other way; the arith task's first tokens are where a steering bug would show)."""
    runs = {
        name: evaluate(backends[name], ["arith_unlock"], limit=DOCS, gen_kwargs="max_gen_toks=32")
        for name in ("hf", "vllm")
    }
    hf, vl = answers(runs["hf"], "arith_unlock"), answers(runs["vllm"], "arith_unlock")
    same = sum(a == b for a, b in zip(hf, vl))
    print(f"\nvLLM vs HF backend, steered arith_unlock answers identical: {same} of {DOCS}")
    assert same >= DOCS - 2, list(zip(hf, vl))
    record = runs["vllm"]["config"]["unlock_eval"]
    assert record["hyperparameters"]["backend"] == "vllm"
    assert record["details"]["engine"]["backend"] == "vllm"
    assert (
        record["details"]["steering_fingerprint"]
        == runs["hf"]["config"]["unlock_eval"]["details"]["steering_fingerprint"]
    )
    assert backends["vllm"].cache_table != backends["hf"].cache_table  # --use_cache keeps the backends apart


@pytest.mark.slow
def test_loglikelihood_is_steered_at_the_context_end_like_the_hf_backend(backends, lm_eval_index):
    import math

    scores = {}
    for name in ("hf", "vllm"):
        results = evaluate(backends[name], ["tiny_unlock_mc"], include=backends["tasks"])
        scores[name] = [
            [r[0] for r in s["resps"]] for s in sorted(results["samples"]["tiny_unlock_mc"], key=lambda s: s["doc_id"])
        ]
    for hf_doc, vl_doc in zip(scores["hf"], scores["vllm"]):
        for hf_ll, vl_ll in zip(hf_doc, vl_doc):
            assert math.isclose(hf_ll[0], vl_ll[0], rel_tol=2e-3, abs_tol=2e-3), (hf_ll, vl_ll)


@pytest.mark.slow
def test_share_alphas_answers_reach_the_other_alphas_run_through_the_cache(backends, lm_eval_index, tmp_path):
    lm = backends["vllm"]
    cache = str(tmp_path / "responses")
    try:
        lm.reconfigure(0.1, [0.1, 0.5])
        evaluate(lm, ["arith_unlock"], limit=4, gen_kwargs="max_gen_toks=16", use_cache=cache)
        lm.reconfigure(0.5)
        served = evaluate(lm, ["arith_unlock"], limit=4, gen_kwargs="max_gen_toks=16", use_cache=cache)
        lm.reconfigure(0.5)
        fresh = evaluate(lm, ["arith_unlock"], limit=4, gen_kwargs="max_gen_toks=16")
    finally:
        lm.reconfigure(0.1)
    assert answers(served, "arith_unlock") == answers(fresh, "arith_unlock")
    assert fresh["config"]["unlock_eval"]["hyperparameters"]["alpha"] == 0.5


@pytest.fixture(scope="module")
def embedded_pack(embedded_pair, tmp_path_factory):
    """The pair's capability pack (PAIR's transfer, from the warm cache)."""
    from unlock_eval.experiments.packs import pack_from_model_args

    path = tmp_path_factory.mktemp("pack") / "cot.safetensors"
    args = ",".join(f"{k}={v}" for k, v in PAIR.items() if k != "alpha")
    pack_from_model_args(args + ",device=cpu").save(path)
    return str(path)


@pytest.mark.slow
def test_composed_packs_and_alpha_profile_steer_the_workers_like_the_key(backends, embedded_pack, lm_eval_index):
    """A pack with itself at 0.5 + 0.5 and a flat alpha_profile, installed on the running engine's workers (the
    directions and per-layer factors they are sent): the answers of the key itself, to the last token."""
    from unlock_eval.methods.unlock.pack_steering import load_packs, setup_from_packs
    from unlock_eval.methods.unlock.spec import UnlockSpec
    from unlock_eval.model_adapters.vllm_engine import install_steering

    lm = backends["vllm"]
    original = lm.steering
    expected = answers(evaluate(lm, ["arith_unlock"], limit=4, gen_kwargs="max_gen_toks=16"), "arith_unlock")
    spec = UnlockSpec(target=PAIR["target"], key=[embedded_pack] * 2, key_weights=[0.5, 0.5], alpha=0.1,
                      alpha_profile=[1.0] * 18, backend="vllm")  # fmt: skip
    uses = load_packs(spec)
    try:
        setup = setup_from_packs(spec, uses, original.identities[PAIR["target"]], "float32")
        assert not setup.normalize and setup.layer_factors() == dict.fromkeys(range(18), 1.0)
        lm.steered_layers = install_steering(lm.model, setup, None)
        lm._use(setup, 0.0)
        composed = evaluate(lm, ["arith_unlock"], limit=4, gen_kwargs="max_gen_toks=16")
    finally:
        lm.steered_layers = install_steering(lm.model, original, None)
        lm._use(original, 0.0)
    assert answers(composed, "arith_unlock") == expected
    assert composed["config"]["unlock_eval"]["details"]["packs"][0]["weight"] == 0.5


@pytest.mark.slow
def test_a_failed_start_leaves_no_engine_process(embedded_pack, monkeypatch):
    """The engine core in its own process (vLLM's default): a failure after it started stops it. The run steers with
    a pack (key=): the engine starts with no source model and no extraction data."""
    pytest.importorskip("vllm", exc_type=ImportError)
    psutil = pytest.importorskip("psutil")
    from unlock_eval.model_adapters import unlock_vllm

    def broken(*_args, **_kwargs):
        raise RuntimeError("hook install failed")

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    monkeypatch.setattr(unlock_vllm, "install_steering", broken)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    monkeypatch.setenv("UNLOCK_EVAL_DATA_DIR", "/nonexistent")  # a pack needs no extraction data
    from unlock_eval.model_adapters.unlock import UnlockLM

    with pytest.raises(RuntimeError, match="hook install failed"):
        UnlockLM(target=PAIR["target"], key=embedded_pack, dtype="float32", backend="vllm", max_model_len=512)
    new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]

    def engine(process) -> bool:
        """Not multiprocessing's resource tracker (it lives as long as this process, whoever started it); a process
        that already exited (a zombie not yet reaped) is no engine either."""
        try:
            return "resource_tracker" not in " ".join(process.cmdline())
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            return False

    gone = psutil.wait_procs([p for p in new if engine(p)], timeout=30)
    assert not gone[1], f"engine processes left: {[(p.pid, p.cmdline()) for p in gone[1]]}"


@pytest.mark.process
def test_plain_lm_eval_vllm_model_loads_with_the_cpu_build():
    """`lm_eval --model vllm` (the sweep's baseline on vLLM) in a fresh process: the start-up hook lets lm-eval's
    vllm module find vllm-cpu, which installs the `vllm` package under another distribution name."""
    import subprocess
    import sys

    pytest.importorskip("vllm", exc_type=ImportError)
    code = "from lm_eval.api.registry import get_model; print(get_model('vllm').__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "VLLM"
