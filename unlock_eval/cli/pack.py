"""`unlock-eval pack`: write a capability pack (one .safetensors file: a transferred key, its map and provenance) from
--model_args or from a results folder, or a llama.cpp control vector (--format gguf); `pack inspect PATH` shows one,
`pack compare A B` the per-layer cosine of two (unlock_eval.methods.unlock.pack, pack_make, pack_gguf)."""

from __future__ import annotations

import argparse
import json
import math
import sys

ACTIONS = {
    "inspect": "show a pack's provenance, per-layer norms and verdict",
    "compare": "per-layer cosine of two packs",
}
FORMATS = {"safetensors": "a capability pack (key= reads it)", "gguf": "a llama.cpp control vector"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=list(ACTIONS), help="; ".join(f"{k}: {v}" for k, v in ACTIONS.items()))
    p.add_argument("paths", nargs="*", help="inspect: one pack; compare: two packs")
    p.add_argument("--model_args", help="the transfer, as --model unlock takes it (source=...,target=...,n=...,k=...)")
    p.add_argument("--from", dest="source", help="a results folder or file of one --model unlock run, or a pack")
    p.add_argument("--output", "-o", help="the file to write: .safetensors (a pack) or .gguf (--format gguf)")
    p.add_argument("--format", choices=list(FORMATS), default="safetensors", help="safetensors (default) or gguf")
    p.add_argument(
        "--alpha",
        type=float,
        help="gguf: the strength baked into the vectors, alpha * mean |h| * r/|r| per layer (default: the alpha the "
        "results run applied, else 0.1)",
    )
    p.add_argument("--json", action="store_true", help="inspect/compare: print JSON")
    p.add_argument("--cache-dir", dest="cache_dir", help="--from a results folder: the artifact cache (default: env)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from unlock_eval.errors import ConfigError

    if args.action is not None:
        made = [name for name in ("model_args", "source", "output", "alpha") if getattr(args, name) is not None]
        if made:
            raise ConfigError(f"pack {args.action}: --{made[0].replace('source', 'from')} is for making a pack")
        wanted = 1 if args.action == "inspect" else 2
        if len(args.paths) != wanted:
            raise ConfigError(f"pack {args.action}: expected {wanted} pack file{'s' * (wanted > 1)}, got {args.paths}")
        return _inspect(args) if args.action == "inspect" else _compare(args)
    if args.paths:
        raise ConfigError(f"unexpected {args.paths[0]!r} (pack inspect PATH, pack compare A B, or --output)")
    return _make(args)


def _make(args: argparse.Namespace) -> int:
    from unlock_eval.errors import ConfigError
    from unlock_eval.outputs import output_file

    if (args.model_args is None) == (args.source is None):
        raise ConfigError("give --model_args (a transfer) or --from (a results folder or a pack), one of them")
    if not args.output:
        raise ConfigError("--output is required (a .safetensors pack, or a .gguf with --format gguf)")
    suffix = ".gguf" if args.format == "gguf" else ".safetensors"
    if args.format != "gguf" and args.output.lower().endswith(".gguf"):
        raise ConfigError(f"--output {args.output}: a .gguf control vector is written with --format gguf")
    output = output_file("--output", args.output, (suffix,))  # before the minutes of work
    if args.alpha is not None and args.format != "gguf":
        raise ConfigError("--alpha: only for --format gguf (a pack's alpha is chosen when it is used)")
    if args.alpha is not None and not math.isfinite(args.alpha):
        raise ConfigError(f"--alpha {args.alpha}: expected a finite number")
    if args.model_args is not None:
        from unlock_eval.experiments.packs import pack_from_model_args

        pack = pack_from_model_args(args.model_args)
    elif args.source.endswith((".safetensors", ".gguf", ".pt", ".pth", ".bin", ".pkl")):
        from unlock_eval.methods.unlock.pack import CapabilityPack

        pack = CapabilityPack.load(args.source, "--from")
    else:
        from unlock_eval.experiments.packs import pack_from_results

        pack = pack_from_results(args.source, args.cache_dir)
    if args.format == "gguf":
        from unlock_eval.experiments.packs import export_gguf

        alpha, layers = export_gguf(pack, output, args.alpha)
        print(f"wrote {output}: a llama.cpp control vector at alpha={alpha}, layers {layers[0]}-{layers[-1]} of "
              f"{pack.num_layers} (llama-cli --control-vector-scaled {output}:1.0)")  # fmt: skip
        return 0
    sha = pack.save(output)
    print(f"wrote {output} (sha256 {sha[:16]}): evaluate with --model unlock --model_args target=...,key={output}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from unlock_eval.cache import sha256_of
    from unlock_eval.methods.unlock.pack import CapabilityPack
    from unlock_eval.reports.pack_view import describe, format_pack

    path = args.paths[0]
    pack = CapabilityPack.load(path)
    view = describe(pack, path, sha256_of(path))
    print(json.dumps(view, indent=2) if args.json else format_pack(view))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from unlock_eval.methods.unlock.pack import CapabilityPack
    from unlock_eval.reports.pack_view import compare, format_compare

    a, b = (CapabilityPack.load(path) for path in args.paths)
    view = compare(a, b, *args.paths)
    print(json.dumps(view, indent=2) if args.json else format_compare(view))
    sys.stdout.flush()
    return 0
