"""Cold vs warm start-up of `lm_eval --model unlock` on the embedded pair, measured side by side in one run.

Cold: empty artifact cache (converted GGUF models kept, their conversion is measured in bench_engine.py).
Warm: everything cached, so no extraction pass and no source model load. Both run the same command:
    lm_eval --model unlock --model_args source=smollm2-135m-instruct,target=gemma3-270m,alpha=0.1,k=8,n=32 \
        --tasks gsm8k_unlock --limit 8
Reported: the adapter's own start-up time (from the results file) and the whole command's wall time.
    python benchmarks/bench_startup.py [--max-gen-toks 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

ARTIFACT_KINDS = ("states", "bases", "masterkey", "subspacemap", "locks")


def run(cache: Path, out: Path, args) -> tuple[float, dict]:
    cmd = [
        sys.executable,
        "-P",  # not the checkout's unlock_eval/ (the wheel maps tasks and adapters into it)
        "-m",
        "lm_eval",
        "--model",
        "unlock",
        "--model_args",
        f"source={args.source},target={args.target},alpha=0.1,k=8,n=32,cache_dir={cache}",
        "--tasks",
        "gsm8k_unlock",
        "--limit",
        str(args.limit),
        "--device",
        "cpu",
        "--gen_kwargs",
        f"max_gen_toks={args.max_gen_toks}",
        "--output_path",
        str(out),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"lm_eval failed:\n{proc.stderr[-3000:]}")
    results = sorted(out.rglob("results_*.json"))[-1]
    record = json.loads(results.read_text())["config"]["unlock_eval"]  # the method record (README: results fields)
    return wall, {**record["details"], "startup_seconds": record["setup_seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", default="smollm2-135m-instruct")
    ap.add_argument("--target", default="gemma3-270m")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--max-gen-toks", type=int, default=32)
    args = ap.parse_args()
    from unlock_eval.cache import default_cache_dir
    from unlock_eval.models import resolve_model

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        # share the converted models with the default cache, so "cold" means "no artifacts", not "no conversion"
        for spec in (args.source, args.target):
            resolve_model(spec)
        cache.mkdir()
        for shared in ("converted", "gguf", "file-hashes"):
            if (default_cache_dir() / shared).exists():
                os.symlink(default_cache_dir() / shared, cache / shared)
        cold_wall, cold = run(cache, Path(tmp) / "out_cold", args)
        warm_wall, warm = run(cache, Path(tmp) / "out_warm", args)
        for kind in ARTIFACT_KINDS:  # and once more cold, so the two cold/warm pairs bracket drift
            shutil.rmtree(cache / kind, ignore_errors=True)
        cold2_wall, cold2 = run(cache, Path(tmp) / "out_cold2", args)
    rows = [
        [
            "adapter start-up (UnlockLM.__init__)",
            f"{cold['startup_seconds']:.1f}s / {cold2['startup_seconds']:.1f}s",
            f"{warm['startup_seconds']:.1f}s",
            f"{min(cold['startup_seconds'], cold2['startup_seconds']) / warm['startup_seconds']:.1f}x",
        ],
        [
            "whole command (start-up + 8 docs)",
            f"{cold_wall:.1f}s / {cold2_wall:.1f}s",
            f"{warm_wall:.1f}s",
            f"{min(cold_wall, cold2_wall) / warm_wall:.2f}x",
        ],
        [
            "extraction forward passes",
            f"{cold['extraction_forward_passes']}",
            f"{warm['extraction_forward_passes']}",
            "",
        ],
    ]
    print(tabulate(rows, headers=["", "cold (x2)", "warm", "cold/warm"]))


if __name__ == "__main__":
    main()
