"""What `unlock-eval pack inspect` and `pack compare` show: a pack's provenance, per-layer norms and verdict, and the
per-layer cosine of two packs, as JSON-able dicts and as text."""

from __future__ import annotations

from typing import Any

from unlock_eval.methods.unlock.pack import CapabilityPack, describe_identity

SHOWN_ARGUMENTS = ("capability", "extract_from", "n", "k", "aggregator", "layer_map", "protocol", "pca_sign")


def describe(pack: CapabilityPack, path: str, sha256: str) -> dict[str, Any]:
    """Everything a user checks before using a pack: what made it, from what, and how each layer looks."""
    made = pack.provenance
    norms, mean_h = pack.norms(), pack.target_norms
    rows = {row["target_layer"]: row for row in ((made["diagnostics"] or {}).get("layers") or [])}
    layer_map = made.get("layer_map")
    layers = []
    for layer in range(pack.num_layers):
        row = rows.get(layer, {})
        layers.append(
            {
                "layer": layer,
                "source_layer": layer_map[layer] if layer_map else layer,
                "norm": round(float(norms[layer]), 6),
                "mean_state_norm": round(float(mean_h[layer]), 4),
                "heldout_r2_k": row.get("heldout_r2_k"),
                "cos_native": row.get("cos"),
                "aligned": row.get("aligned"),
            }
        )
    return {
        "file": path,
        "sha256": sha256,
        "made_by": f"unlock-eval {made['unlock_eval_version']}",
        "created": made["created"],
        "method": made.get("method"),
        "models": {
            role: {"spec": m["spec"], "identity": describe_identity(m["identity"]), "revision": m.get("revision")}
            for role, m in made["models"].items()
        },
        "target_shape": made["target_shape"],
        "arguments": {k: made["hyperparameters"].get(k) for k in SHOWN_ARGUMENTS if k in made["hyperparameters"]},
        "templates": made["templates"],
        "extraction": made["extraction"],
        "dtypes": made["dtypes"],
        "verdict": (made["diagnostics"] or {}).get("verdict"),
        "applied": made.get("applied"),
        "layers": layers,
    }


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_pack(view: dict[str, Any]) -> str:
    lines = [f"{view['file']}  (sha256 {view['sha256'][:16]}, {view['made_by']}, {view['created']})"]
    models = view["models"]
    for role in ("source", "source_locked", "target"):
        m = models[role]
        lines.append(f"  {role:<13} {m['spec']}  [{m['identity']}{', ' + m['revision'] if m['revision'] else ''}]")
    shape = view["target_shape"]
    lines.append(
        f"  method        {view['method']}: {shape['num_layers']} target layers of size {shape['hidden_size']}"
    )
    lines.append("  arguments     " + ", ".join(f"{k}={v}" for k, v in view["arguments"].items()))
    ext = view["extraction"]
    lines.append(
        f"  extraction    {ext['extract_from']}, n={ext['n']}, questions sha256 {ext['questions_sha256'][:16]}"
    )
    if ext.get("overlap"):
        lines.append(f"  WARNING       the extraction saw test documents: {ext['overlap']}")
    templates = view["templates"]
    lines.append(
        f"  templates     locked {templates['locked_sha256'][:12]}, unlocked {templates['unlocked_sha256'][:12]}"
    )
    lines.append(f"  verdict       {view['verdict'] or 'no diagnostics (native, or n < 4)'}")
    applied = view["applied"]
    if applied:
        scores = "; ".join(
            f"{task} " + ", ".join(f"{m}={v:.3f}" for m, v in metrics.items())
            for task, metrics in applied["scores"].items()
        )  # fmt: skip
        lines.append(f"  applied       alpha={applied['alpha']}, mode={applied['mode']}, layers={applied['layers']}")
        lines.append(f"  scored        {scores or '-'}")
    lines.append("")
    lines.append(f"  {'layer':>5} {'source':>6} {'|r|':>10} {'mean |h|':>10} {'R² (k)':>8} {'cos native':>10} aligned")
    for row in view["layers"]:
        aligned = "-" if row["aligned"] is None else "yes" if row["aligned"] else "no"
        lines.append(
            f"  {row['layer']:>5} {row['source_layer']:>6} {row['norm']:>10.4f} {row['mean_state_norm']:>10.2f} "
            f"{_number(row['heldout_r2_k']):>8} {_number(row['cos_native']):>10} {aligned}"
        )
    return "\n".join(lines)


def compare(a: CapabilityPack, b: CapabilityPack, path_a: str, path_b: str) -> dict[str, Any]:
    """The per-layer cosine of two packs' directions (one target only), and its summary."""
    cosines = [round(float(c), 6) for c in a.cosine(b, [path_a, path_b])]
    return {
        "first": path_a,
        "second": path_b,
        "target": a.provenance["models"]["target"]["spec"],
        "cosine": cosines,
        "mean": round(sum(cosines) / len(cosines), 6),
        "min": min(cosines),
        "max": max(cosines),
    }


def format_compare(view: dict[str, Any]) -> str:
    lines = [
        f"cosine per target layer of {view['first']} and {view['second']} (target {view['target']}): "
        f"mean {view['mean']:.3f}, min {view['min']:.3f}, max {view['max']:.3f}",
        "  (near 1: the packs push the same way, and composing them adds strength; near 0: independent directions; "
        "below 0: they cancel)",
    ]
    lines += [f"  layer {layer:>3}  {cos:+.4f}" for layer, cos in enumerate(view["cosine"])]
    return "\n".join(lines)
