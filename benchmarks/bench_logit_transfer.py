"""Logit-difference transfer vs plain generation on the embedded target, side by side in one run.

Gemma-3-270M, a batch of GSM8K test questions in the `cot` preset's locked prompt, greedy, a fixed number of new
tokens (no early stop, so every case does the same work). Cases, run in turn (interleaved repeats, median):
  plain            the target's own `generate`
  prompt-induced   Gemma in all three roles: the sources (unlocked and locked template) share one checkpoint,
                   so both go through one batched forward of 2B rows per token (what `--model logit_transfer`
                   runs for target=gemma3-270m)
  model-induced    two source checkpoints (a second copy of the model stands in for the second checkpoint):
                   two extra forward calls of B rows per token
It also reports the share of the transfer's time spent in the source forwards (what dominates).
    python benchmarks/bench_logit_transfer.py [--batch 8 --new-tokens 32 --repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tabulate import tabulate

from unlock_eval import load_model
from unlock_eval.data.prompts import CAPABILITIES, load_questions, render
from unlock_eval.methods.logit_transfer.mix import SourceStepper, logit_rows, mixed_logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tok = load_model(args.model)
    twin, _ = load_model(args.model)  # a separate object: the model-induced case's second checkpoint
    preset = CAPABILITIES["cot"]
    questions = load_questions("gsm8k", args.batch)
    enc = lambda template: tok([render(template, q) for q in questions], return_tensors="pt", padding=True)  # noqa: E731
    locked, unlocked = enc(preset.locked_template), enc(preset.unlocked_template)
    vocab = logit_rows(model)
    source_seconds = {"prompt-induced": 0.0, "model-induced": 0.0}

    def generate():
        return model.generate(
            **locked, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
            pad_token_id=tok.pad_token_id,
        )  # fmt: skip

    def transfer(name: str, source, source_locked, source_inputs):
        def run():
            stepper = SourceStepper(source, source_locked, vocab)
            forward = stepper._forward

            def timed_forward(*a, **k):  # time spent in the source models
                t0 = time.perf_counter()
                try:
                    return forward(*a, **k)
                finally:
                    source_seconds[name] += time.perf_counter() - t0

            stepper._forward = timed_forward
            with mixed_logits(model, stepper, source_inputs, 1.0):
                generate()

        return run

    cases = {
        "plain": generate,
        "prompt-induced": transfer(
            "prompt-induced", model, model, (unlocked.input_ids, unlocked.attention_mask, *locked.values())
        ),
        "model-induced": transfer("model-induced", model, twin, (*locked.values(), *locked.values())),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    with torch.inference_mode():
        generate()  # warm-up
        for _ in range(args.repeats):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    rows = []
    for name in cases:
        share = source_seconds.get(name, 0.0) / sum(times[name]) if name != "plain" else 0.0
        tokens = args.batch * args.new_tokens / median[name]
        rows.append((name, f"{median[name]:.1f} s", f"{tokens:.1f} tok/s", f"{median[name] / median['plain']:.2f}x",
                     f"{share:.0%}" if name != "plain" else "-"))  # fmt: skip
    print(f"{args.model}, batch {args.batch}, {args.new_tokens} new tokens, greedy; median of {args.repeats}, "
          f"interleaved; {torch.get_num_threads()} CPU threads")  # fmt: skip
    print(tabulate(rows, headers=["case", "time", "throughput", "vs plain", "in source forwards"], tablefmt="github"))


if __name__ == "__main__":
    main()
