"""The diagnostics of a transfer (methods.unlock.diagnostics.Diagnosis) as a text table: `unlock-eval diagnose` and
the demo's report page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlock_eval.methods.unlock.measures import chance_cosine

if TYPE_CHECKING:
    from unlock_eval.methods.unlock.diagnostics import Diagnosis, LayerDiagnostics


def format_diagnosis(d: Diagnosis) -> str:
    """The main table, the verdict line, the k and n sweeps (held-out R² / cosine per layer) and the passes run."""
    from tabulate import tabulate

    def num(value, digits=3):
        return "" if value is None else f"{value:+.{digits}f}" if digits == 3 else f"{value:.{digits}f}"

    table = [
        [
            r.target_layer,
            r.source_layer,
            f"{r.relative_depth:.2f}",
            num(r.heldout_r2_k),
            num(r.heldout_r2_full),
            f"{r.cka:.3f} ({r.cka_chance:.3f})",
            "" if r.cos is None else f"{r.cos:+.3f} [{r.cos_low:+.3f}, {r.cos_high:+.3f}]",
            r.sign,
            f"{r.key_norm_ratio:.3f}" + ("" if r.native_norm_ratio is None else f" / {r.native_norm_ratio:.3f}"),
            "yes" if r.aligned else "",
        ]
        for r in d.rows
    ]
    headers = ["target layer", "source layer", "depth", f"held-out R² (k={d.k})", "held-out R² (full)",
               "CKA (chance)", "cos(transferred, native) [95%]", "sign", "|key|/|h| (native)", "aligned"]  # fmt: skip
    text = [
        f"{d.source} -> {d.target}: n={d.n} prompts, k={d.k}, {d.folds}-fold held-out R² (0 = predicting the "
        f"training mean), CKA against shuffled pairs, cosine chance level (random directions, d={d.hidden_size}): "
        f"{chance_cosine(d.hidden_size):.3f}",
        tabulate(table, headers=headers, disable_numparse=True),
        f"verdict: {d.verdict}",
    ]
    for name, sweep in (("k", d.sweep_k), ("n", d.sweep_n)):
        if sweep:
            values = list(sweep)
            rows = [
                [layer, *(f"{sweep[v][layer].heldout_r2_k:+.2f} / {_cos(sweep[v][layer])}" for v in values)]
                for layer in range(len(d.rows))
            ]
            text.append(f"sweep over {name}: held-out R² (k coords) / cosine, per target layer")
            text.append(
                tabulate(rows, headers=["target layer", *(f"{name}={v}" for v in values)], disable_numparse=True)
            )
    if d.pca_sign_flipped_layers is not None:
        flipped = d.pca_sign_flipped_layers
        text.append(
            f"PCA sign: the SVD's own sign points against the mean difference in {len(flipped)} of "
            f"{d.source_num_layers} source layers ({', '.join(map(str, flipped)) or 'none'}); pca_sign=raw (the "
            "reference) steers those layers the other way from pca_sign=mean (ours)"
        )
    text.append(f"extraction forward passes this run: {d.forward_passes}")
    return "\n".join(text)


def _cos(row: LayerDiagnostics) -> str:
    return "n/a" if row.cos is None else f"{row.cos:+.2f}"
