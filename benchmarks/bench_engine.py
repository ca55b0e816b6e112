"""Engine benchmark on the real target: capture vs naive forward, steered vs unsteered generation, cached vs cold load.

Every figure is a ratio of two measurements taken side by side in this one run (interleaved repeats, median).
    python benchmarks/bench_engine.py [--model gemma3-270m] [--skip-conversion]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from tabulate import tabulate

from unlock_eval import capture_final_states, load_model
from unlock_eval.data.prompts import CAPABILITIES, load_questions, render
from unlock_eval.layers import find_decoder_layers
from unlock_eval.methods.unlock.masterkey import MasterKey
from unlock_eval.methods.unlock.steer import steer


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per function, the functions run in turn so drift hits them all alike."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--n", type=int, default=32, help="prompts for the capture benchmark")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-conversion", action="store_true", help="skip the cold GGUF conversion (~1.5 min)")
    args = ap.parse_args()
    torch.manual_seed(0)

    model, tok = load_model(args.model)
    template = CAPABILITIES["cot"].locked_template
    prompts = [render(template, q) for q in load_questions("gsm8k", args.n)]
    rows = []

    # (a) capture (no LM head, hooks, early stop) vs a naive full forward with output_hidden_states
    def naive():
        with torch.inference_mode():
            for i in range(0, len(prompts), args.batch):
                enc = tok(prompts[i : i + args.batch], return_tensors="pt", padding=True)
                hs = model(**enc, output_hidden_states=True).hidden_states
                torch.stack([h[:, -1] for h in hs[1:]])

    t = interleaved(
        {"capture": lambda: capture_final_states(model, tok, prompts, batch_size=args.batch), "naive": naive},
        args.repeats,
    )
    rows.append(
        [
            "capture_final_states vs full forward + output_hidden_states",
            f"{t['capture']:.2f}s",
            f"{t['naive']:.2f}s",
            f"{t['naive'] / t['capture']:.2f}x faster",
        ]
    )

    # (b) greedy generation throughput, same batch: steered (two modes) vs unsteered
    L, d = len(find_decoder_layers(model)), model.config.hidden_size
    key = MasterKey(torch.randn(L, d))
    enc = tok(prompts[: args.batch], return_tensors="pt", padding=True)
    gen = dict(
        max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
    )

    def generate(mode=None):
        def run():
            with torch.inference_mode():
                if mode is None:
                    model.generate(**enc, **gen)
                else:
                    with steer(model, key, alpha=0.1, mode=mode):
                        model.generate(**enc, **gen)

        return run

    generate()()  # warm-up
    t = interleaved(
        {"plain": generate(), "prefill_last": generate("prefill_last"), "additive_all": generate("additive_all")},
        args.repeats,
    )
    tokens = args.batch * args.new_tokens
    for mode in ("prefill_last", "additive_all"):
        rows.append(
            [
                f"generation throughput, {mode} vs unsteered (batch {args.batch}, {args.new_tokens} tokens)",
                f"{tokens / t[mode]:.1f} tok/s",
                f"{tokens / t['plain']:.1f} tok/s",
                f"{t['plain'] / t[mode]:.3f} (steered/unsteered)",
            ]
        )

    # (c) cached load vs first conversion of the GGUF file, in a fresh cache directory
    if not args.skip_conversion:
        with tempfile.TemporaryDirectory() as tmp:
            cold = timed(lambda: load_model(args.model, cache_dir=tmp))
            warm = statistics.median(timed(lambda: load_model(args.model, cache_dir=tmp)) for _ in range(args.repeats))
        rows.append(
            [
                f"load_model({args.model!r}): cached vs first conversion",
                f"{warm:.2f}s",
                f"{cold:.2f}s",
                f"{cold / warm:.1f}x faster",
            ]
        )

    print(tabulate(rows, headers=["measurement", "ours", "baseline", "ratio"]))


if __name__ == "__main__":
    main()
