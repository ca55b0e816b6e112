"""Peak resident memory of the weight-space merge relative to loading one model, measured side by side in one run.

Three random Llama checkpoints of the same shape (default ~0.84 GB each in float32) are written once; then, each
in a fresh process and alternating, best of --repeats:
  (a) `from_pretrained` of one of them with every weight read once: the baseline, "one model" (transformers maps
      safetensors lazily, so weights never touched would not count);
  (b) `unlock_eval.methods.weight_transfer.merge.merge_models` with its default shard size (1 GiB);
  (c) the same with 256 MiB shards;
  (d) the naive merge: three state dicts in memory, as a script would do it.
Peak RSS is the process's high-water mark (VmHWM) minus the RSS after imports, so only the model work counts.
    python benchmarks/bench_merge.py [--hidden 1024 --layers 12 --repeats 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tabulate import tabulate

CHILD = r"""
import json, sys, psutil
import torch
from transformers import AutoModelForCausalLM
from unlock_eval.methods.weight_transfer.merge import merge_models
from unlock_eval.method import peak_rss_mb
from safetensors.torch import load_file, save_file
root, case = sys.argv[1], sys.argv[2]
base = psutil.Process().memory_info().rss
dirs = {r: f"{root}/{r}" for r in ("target", "source", "source_locked")}
out = f"{root}/out-{case}"
import os, shutil
shutil.rmtree(out, ignore_errors=True); os.makedirs(out)
if case == "one_model":
    model = AutoModelForCausalLM.from_pretrained(dirs["target"], dtype=torch.float32)
    sum(float(p.sum()) for p in model.parameters())  # touch every weight, as an evaluation does (else mmap'd)
elif case == "merge":
    merge_models(dirs, 1.0, out)
elif case == "merge_256mb_shards":
    merge_models(dirs, 1.0, out, shard_bytes=256 << 20)
elif case == "naive":
    t, s, b = (load_file(f"{dirs[r]}/model.safetensors") for r in ("target", "source", "source_locked"))
    save_file({k: t[k] + (s[k] - b[k]) for k in t}, f"{out}/model.safetensors")
peak = peak_rss_mb() * 2**20
shutil.rmtree(out, ignore_errors=True)
print(json.dumps({"peak_mb": (peak - base) / 2**20}))
"""
CASES = ("one_model", "merge", "merge_256mb_shards", "naive")


def write_models(root: Path, hidden: int, layers: int) -> float:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=hidden, intermediate_size=int(2.75 * hidden), num_hidden_layers=layers, vocab_size=32000
    )
    for seed, role in enumerate(("target", "source", "source_locked")):
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(root / role, max_shard_size="100GB")
    return (root / "target" / "model.safetensors").stat().st_size / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_merge_") as tmp:
        size_mb = write_models(Path(tmp), args.hidden, args.layers)
        peaks: dict[str, list[float]] = {case: [] for case in CASES}
        for _ in range(args.repeats):  # alternate the cases, so machine noise hits them alike
            for case in CASES:
                out = subprocess.run([sys.executable, "-c", CHILD, tmp, case], capture_output=True, text=True)
                if out.returncode:
                    sys.exit(out.stderr[-3000:])
                peaks[case].append(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])
    best = {case: min(values) for case, values in peaks.items()}
    rows = [(case, f"{best[case]:.0f} MB", f"{best[case] / best['one_model']:.2f}x") for case in CASES]
    print(f"three checkpoints of {size_mb:.0f} MB each (float32); peak RSS above the post-import RSS, best of "
          f"{args.repeats}")  # fmt: skip
    print(tabulate(rows, headers=["case", "peak RSS", "vs one model"], tablefmt="github"))


if __name__ == "__main__":
    main()
