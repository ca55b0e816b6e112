"""SubspaceMap.fit at the paper's scale: the full-SVD fit vs ours, and a k grid sharing one decomposition.

Random final-token states shaped like Qwen1.5-14B -> Qwen1.5-7B (source 40 layers x 5120, target 32 x 4096) for
n prompts (default 1024), relative-depth layer map. Printed, all measured in this run (best of --repeats,
alternating):
  (a) the previous fit: a full float64 SVD per layer and side (torch.linalg.svd), then M = pinv(Ps) Pt;
  (b) `SubspaceMap.fit` (Gram/covariance eigendecomposition, unlock_eval.methods.unlock.bases) at k=16;
  (c) a 6-value k grid {1, 4, 16, 32, 64, 128}: decompose once for k=128 (`Bases.compute`), then six fits that
      slice it, relative to one fit (b);
and the largest difference between the keys transferred by (a) and (b) (the basis inside each subspace may
differ; the transfer must not).
    python benchmarks/bench_subspace_fit.py [--n 1024 --repeats 1 --skip-reference]
"""

from __future__ import annotations

import argparse
import time

import torch
from tabulate import tabulate

from unlock_eval import MasterKey, SubspaceMap
from unlock_eval.methods.unlock.align import resolve_layer_map
from unlock_eval.methods.unlock.bases import Bases

GRID = (1, 4, 16, 32, 64, 128)


def reference_fit(src: torch.Tensor, tgt: torch.Tensor, k: int) -> SubspaceMap:
    """The fit as it was: full SVD per layer and side."""
    mapping, _ = resolve_layer_map(None, src.shape[0], tgt.shape[0])
    Vs, M, Vt = [], [], []
    for t, s in enumerate(mapping):
        Hs, Ht = src[s].double(), tgt[t].double()
        vs = torch.linalg.svd(Hs, full_matrices=False)[2][:k]
        vt = torch.linalg.svd(Ht, full_matrices=False)[2][:k]
        Vs.append(vs)
        Vt.append(vt)
        M.append(torch.linalg.pinv(Hs @ vs.T) @ (Ht @ vt.T))
    return SubspaceMap(torch.stack(Vs).float(), torch.stack(M).float(), torch.stack(Vt).float(), mapping, src.shape[0])


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def grid_fit(src: torch.Tensor, tgt: torch.Tensor) -> list[SubspaceMap]:
    mapping, _ = resolve_layer_map(None, src.shape[0], tgt.shape[0])
    sb = Bases.compute(src, max(GRID), layers=mapping)
    tb = Bases.compute(tgt, max(GRID))
    return [SubspaceMap.fit(src, tgt, k=k, source_bases=sb, target_bases=tb) for k in GRID]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--skip-reference", action="store_true", help="skip the (slow) full-SVD fit")
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    src = torch.randn(40, args.n, 5120, generator=g)
    tgt = torch.randn(32, args.n, 4096, generator=g)
    key = MasterKey(torch.randn(40, 5120, generator=g))
    times: dict[str, list[float]] = {"reference": [], "ours": [], "grid": []}
    for _ in range(args.repeats):  # alternate the variants in each round
        if not args.skip_reference:
            t, ref = timed(lambda: reference_fit(src, tgt, args.k))
            times["reference"].append(t)
        t, ours = timed(lambda: SubspaceMap.fit(src, tgt, k=args.k))
        times["ours"].append(t)
        t, _ = timed(lambda: grid_fit(src, tgt))
        times["grid"].append(t)
    best = {name: min(values) for name, values in times.items() if values}
    rows = []
    if "reference" in best:
        rows.append(["(a) previous fit: full SVD per layer", f"{best['reference']:.1f}", "1.00"])
    one = best["ours"]
    base = best.get("reference", one)
    rows.append([f"(b) SubspaceMap.fit, k={args.k}", f"{one:.1f}", f"{one / base:.2f}"])
    rows.append(
        [
            f"(c) k grid {','.join(map(str, GRID))}, one decomposition",
            f"{best['grid']:.1f}",
            f"{best['grid'] / base:.2f}",
        ]
    )
    print(
        f"source 40 x {args.n} x 5120, target 32 x {args.n} x 4096, best of {args.repeats}, "
        f"{torch.get_num_threads()} threads"
    )
    print(tabulate(rows, headers=["fit", "seconds", "vs (a)" if "reference" in best else "vs (b)"]))
    print(f"6-value k grid / one fit (b): {best['grid'] / one:.2f}x")
    if not args.skip_reference:
        a, b = ref.transfer(key).vectors, ours.transfer(key).vectors
        print(
            f"max |transferred key (a) - (b)| = {float((a - b).abs().max()):.2e} (max |key| {float(a.abs().max()):.2e})"
        )


if __name__ == "__main__":
    main()
