"""A 4-alpha sweep vs the same 4 points as separate `lm_eval` commands, start-up included, on the embedded target.

Every side runs Unlock SmolLM2-135M-Instruct -> Gemma-3-270M (n=32, k=8, the `cot` preset) on the first --limit
GSM8K test documents, greedy, --max-gen-toks new tokens, on the CPU; one warm-up run fills the artifact cache
first, so every side starts warm (no extraction). Each side is one whole command, timed from outside:
  (a) `unlock-eval sweep --alphas 0.05,0.1,0.2,0.5`: one process, the four alphas share one generation pass;
  (b) the same sweep with `--separate-alphas`: one process, each alpha generates on its own;
  (c) four `lm_eval --model unlock ... alpha=X` commands one after another, as a user would type them.
Rounds alternate the sides; best of --repeats. Ratios are against (c).
    python benchmarks/bench_sweep_alphas.py [--limit 4 --max-gen-toks 64 --repeats 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

ALPHAS = ("0.05", "0.1", "0.2", "0.5")
MODEL_ARGS = "source=smollm2-135m-instruct,target=gemma3-270m,n=32,k=8"


def timed(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=4)
    p.add_argument("--max-gen-toks", type=int, default=64)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    common = ["--tasks", "gsm8k_unlock", "--limit", str(args.limit), "--device", "cpu"]
    common += ["--gen_kwargs", f"max_gen_toks={args.max_gen_toks}"]
    times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        lm_eval = [str(bin_dir / "lm_eval"), "--model", "unlock"]
        timed([*lm_eval, "--model_args", f"{MODEL_ARGS},alpha=0.1", *common, "--limit", "1"], env)  # warm-up
        sweep = [str(bin_dir / "unlock-eval"), "sweep", "--model_args", MODEL_ARGS, "--alphas", ",".join(ALPHAS)]
        sweep += [*common, "--no-baseline"]
        for r in range(args.repeats):
            times["c"].append(
                sum(
                    timed(
                        [*lm_eval, "--model_args", f"{MODEL_ARGS},alpha={a}", *common, "--output_path", f"{out}/c{r}"],
                        env,
                    )
                    for a in ALPHAS
                )
            )
            times["a"].append(timed([*sweep, "--output_path", f"{out}/a{r}"], env))
            times["b"].append(timed([*sweep, "--separate-alphas", "--output_path", f"{out}/b{r}"], env))
    best = {side: min(values) for side, values in times.items()}
    rows = [
        ["(a) unlock-eval sweep, 4 alphas in one generation pass", f"{best['a']:.0f}", f"{best['a'] / best['c']:.2f}"],
        ["(b) unlock-eval sweep --separate-alphas", f"{best['b']:.0f}", f"{best['b'] / best['c']:.2f}"],
        ["(c) 4 separate lm_eval commands", f"{best['c']:.0f}", "1.00"],
    ]
    print(f"Gemma-3-270M target, {args.limit} documents, {args.max_gen_toks} new tokens, best of {args.repeats}")
    print(tabulate(rows, headers=["4 alpha points, start-up included", "seconds", "vs (c)"]))


if __name__ == "__main__":
    main()
