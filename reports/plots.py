"""Report figures (matplotlib, headless): accuracy vs alpha and vs k per task, generated-length distributions,
behaviour per run, a transfer's diagnostics per layer."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from unlock_eval.reports.table import Table

if TYPE_CHECKING:
    from unlock_eval.methods.unlock.diagnostics import Diagnosis


def _short(label: str, width: int = 48) -> str:
    """A row label for an axis: its start and its end (where the settings that tell rows apart are) kept."""
    return label if len(label) <= width else label[: width // 2 - 2] + " … " + label[-(width // 2 - 1) :]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on CI machines or servers
    import matplotlib.pyplot as plt

    return plt


def sweep_figures(table: Table, knob: str) -> list:
    """One figure per task: score vs `knob` (alpha or k), one line per method and pair (the other settings fixed),
    the 95% interval (±1.96 stderr) as a band, the plain target as a dashed line. Only lines with 2+ points."""
    from unlock_eval.reports.html import figure_from_matplotlib

    figures = []
    for column in table.columns:
        lines: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        plain = []
        for i, run in enumerate(table.rows):
            cell = table.cells.get((i, column))
            if cell is None or cell.value is None:
                continue
            if run.method == "plain":
                plain.append(cell.value)
            if run.hyper.get(knob) is None:
                continue
            fixed = {k: v for k, v in run.hyper.items() if k != knob and v is not None}
            pair = run.target if run.source in (None, run.target) else f"{run.source} → {run.target}"
            label = f"{run.method} {pair} " + " ".join(f"{k}={v}" for k, v in fixed.items())
            lines[label].append((float(run.hyper[knob]), cell.value, 1.96 * (cell.stderr or 0.0)))
        lines = {label: sorted(points) for label, points in lines.items() if len({p[0] for p in points}) > 1}
        if not lines:
            continue
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for label, points in lines.items():
            xs, ys, half = zip(*points)
            ax.plot(xs, ys, marker="o", label=label)
            ax.fill_between(xs, [y - h for y, h in zip(ys, half)], [y + h for y, h in zip(ys, half)], alpha=0.2)
        for value in plain[:1]:
            ax.axhline(value, linestyle="--", color="grey", label="plain target")
        ax.set_xlabel(knob)
        ax.set_ylabel(table.rows[0].tasks.get(column).metric if column in table.rows[0].tasks else "score")
        ax.set_title(f"{column}: score vs {knob}")
        ax.legend(fontsize="small")
        caption = f"{column}: score vs {knob}, one line per method and pair; bands: 95% interval (±1.96 stderr)"
        figures.append(figure_from_matplotlib(fig, f"{column}_vs_{knob}", caption))
    return figures


def length_figure(table: Table):
    """Box plots of the generated length per row, in the table's unit; None without logged samples."""
    from unlock_eval.reports.html import figure_from_matplotlib

    data, labels = [], []
    for i, run in enumerate(table.rows):
        lengths = table.lengths.get(i)  # measured once, when the table was built
        if lengths:
            data.append(lengths)
            labels.append(_short(run.label))
    if not data:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 0.6 * len(data) + 1.5))
    ax.boxplot(data, orientation="horizontal", tick_labels=labels)
    ax.set_xlabel(f"generated length ({table.length_unit})")
    ax.set_title("generated length per run")
    fig.tight_layout()
    return figure_from_matplotlib(fig, "generated_length", f"generated length per run ({table.length_unit})")


def behaviour_figure(table: Table):
    """Per row: share of step-structured outputs, share of degenerate outputs (annotated with the most common
    reason), repetition, and the first-word entropy annotated with the most common first words; None without logged
    samples."""
    from unlock_eval.reports.html import figure_from_matplotlib

    rows = [(i, b) for i, b in sorted(table.behaviour.items())]
    if not rows:
        return None
    labels = [_short(table.rows[i].label) for i, _ in rows]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(14, 0.5 * len(rows) + 1.8), sharey=True)
    panels = [("step-structured share", [b.step_structured for _, b in rows]),
              ("degenerate share", [b.degenerate for _, b in rows]),
              ("repetition (repeated 4-grams)", [b.repetition for _, b in rows]),
              ("first-word entropy (bits)", [b.first_word_entropy for _, b in rows])]  # fmt: skip
    for ax, (title, values) in zip(axes, panels):
        ax.barh(range(len(rows)), values)
        ax.set_title(title, fontsize="small")
    for ax in axes[:2]:
        ax.set_xlim(0, 1)  # shares
    for y, (_, b) in enumerate(rows):
        if b.degenerate_reasons:
            axes[1].annotate(next(iter(b.degenerate_reasons)), (0, y), xytext=(3, 0), textcoords="offset points",
                             va="center", fontsize="x-small")  # fmt: skip
        axes[3].annotate(b.top_words_text(2), (0, y), xytext=(3, 0), textcoords="offset points", va="center",
                         fontsize="x-small")  # fmt: skip
    axes[0].set_yticks(range(len(rows)), labels)
    axes[0].invert_yaxis()
    fig.tight_layout()
    caption = (
        "behaviour per run: step-structured outputs, degenerate outputs (most common reason), repetition, first "
        "generated word (entropy, top words)"
    )
    return figure_from_matplotlib(fig, "behaviour", caption)


def diagnosis_figure(d: Diagnosis):
    """Held-out R², CKA and the cosine (with its interval and chance band) against relative depth (a matplotlib
    figure; the caller saves and closes it)."""
    from unlock_eval.methods.unlock.measures import chance_cosine

    plt = _pyplot()
    depth = [r.relative_depth for r in d.rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    top.plot(depth, [r.heldout_r2_k for r in d.rows], marker="o", label=f"held-out R², k={d.k} coordinates")
    top.plot(depth, [r.heldout_r2_full for r in d.rows], marker=".", label="held-out R², full states")
    top.plot(depth, [r.cka for r in d.rows], marker="s", label="CKA")
    top.plot(depth, [r.cka_chance for r in d.rows], linestyle=":", color="grey", label="CKA, shuffled pairs")
    for k, rows in d.sweep_k.items():
        if k != d.k:
            top.plot(depth, [r.heldout_r2_k for r in rows], alpha=0.5, linewidth=1, label=f"held-out R², k={k}")
    top.axhline(0, color="black", linewidth=0.5)
    top.set_ylabel("R² / CKA")
    top.legend(fontsize="x-small")
    if d.rows[0].cos is not None:
        cos = [r.cos for r in d.rows]
        bottom.plot(depth, cos, marker="o", label="cos(transferred, native)")
        bottom.fill_between(
            depth, [r.cos_low for r in d.rows], [r.cos_high for r in d.rows], alpha=0.25, label="95% bootstrap"
        )
        chance = chance_cosine(d.hidden_size)
        bottom.axhspan(-chance, chance, color="grey", alpha=0.2, label="chance |cos| (random directions)")
    bottom.plot(depth, [r.key_norm_ratio for r in d.rows], linestyle="--", label="|transferred key| / |h|")
    bottom.axhline(0, color="black", linewidth=0.5)
    bottom.set_xlabel("relative depth of the target layer")
    bottom.set_ylabel("cosine / norm ratio")
    bottom.legend(fontsize="x-small")
    fig.suptitle(f"{d.source} → {d.target} (n={d.n}, k={d.k})")
    fig.tight_layout()
    return fig


def report_figures(table: Table) -> list:
    figures = sweep_figures(table, "alpha") + sweep_figures(table, "k")
    extra = [length_figure(table), behaviour_figure(table)]
    return figures + [figure for figure in extra if figure is not None]
