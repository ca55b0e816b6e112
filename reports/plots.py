"""Report figures (matplotlib, headless): accuracy vs alpha and vs k per task, generated-length distributions,
behaviour per run, a transfer's diagnostics per layer."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from unlock_eval.reports.table import Table

if TYPE_CHECKING:
    from unlock_eval.methods.unlock.diagnostics import Diagnosis


LABEL_WIDTH = 34  # characters per line of a row label on an axis (wrapped at spaces, never cut)
QUIET = ("capability",)  # named only where it tells rows apart (the table has no column for it)


def distinct_labels(items: list[tuple[str, str, dict]]) -> tuple[list[str], str]:
    """Labels for (method, base, settings) items that tell every item apart, and what they leave out.

    A label is its base (method and pair) and the settings whose values differ among the items (alpha, k, n ...);
    a setting that every item having it shares is left out of the labels and said once, in the returned text
    (`shared_text`). Where two labels would still read the same, those items name every setting, then their
    position: no two labels are ever equal, and none is cut."""
    keys = list(dict.fromkeys(k for _, _, settings in items for k in settings))
    by_method = [(method, settings) for method, _, settings in items]
    varying = [k for k in keys if not same_where_present(by_method, k)]
    shared = [k for k in keys if k not in varying and k not in QUIET]

    def label(base: str, settings: dict, names: list[str]) -> str:
        return " ".join([base, *(f"{k}={settings[k]}" for k in names if settings.get(k) is not None)]).strip()

    labels = [label(base, settings, varying) for _, base, settings in items]
    for i, (_, base, settings) in enumerate(items):
        if labels.count(labels[i]) > 1:
            labels[i] = label(base, settings, keys)
    labels = [text if labels.count(text) == 1 else f"{text} (#{i + 1})" for i, text in enumerate(labels)]
    return labels, shared_text([(method, settings) for method, _, settings in items], shared)


def same_where_present(items: list[tuple[str, dict]], key: str) -> bool:
    """Whether a setting is one fact about these (method, settings) items: a single value, held by every item of
    each method that has it at all (a setting only some unlock rows have tells those rows apart)."""
    having = [(method, settings[key]) for method, settings in items if settings.get(key) not in (None, "")]
    methods = {method for method, _ in having}
    complete = all(settings.get(key) not in (None, "") for method, settings in items if method in methods)
    return bool(having) and complete and len({repr(v) for _, v in having}) == 1


def shared_text(items: list[tuple[str, dict]], keys: list[str]) -> str:
    """The settings `keys`, each the same in every item (method, settings) that has it, said once with the rows they
    hold for: "native_steering and unlock rows: k=16 n=64; plain rows: dtype=float32"."""
    scopes: dict[str, list[str]] = {}
    for key in keys:
        having = [i for i, (_, settings) in enumerate(items) if settings.get(key) not in (None, "")]
        if not having:
            continue
        methods = list(dict.fromkeys(items[i][0] for i in having))
        complete = all(settings.get(key) not in (None, "") for method, settings in items if method in methods)
        named = " and ".join([", ".join(methods[:-1]), methods[-1]] if len(methods) > 1 else methods)
        if len(having) == len(items):
            scope = "every row"
        else:
            scope = f"{named} rows" if complete else f"{len(having)} of the {named} rows"
        scopes.setdefault(scope, []).append(f"{key}={items[having[0]][1][key]}")
    return "; ".join(f"{scope}: {' '.join(values)}" for scope, values in scopes.items())


def _pair(run) -> str:
    return run.target if run.source in (None, run.target) else f"{run.source} → {run.target}"


def row_labels(table: Table) -> tuple[list[str], str]:
    """One distinct, complete label per table row (method, pair, the settings that differ between rows), and the
    settings the rows share (said once, in the figure's title, not on every row)."""
    return distinct_labels([(run.method, f"{run.method} {_pair(run)}", _settings(run.hyper)) for run in table.rows])


def _settings(hyper: dict) -> dict:
    return {k: v for k, v in hyper.items() if v is not None}


def wrap(label: str, width: int = LABEL_WIDTH) -> str:
    """A label on several lines, broken at spaces only (a model name or a setting is never cut)."""
    import textwrap

    return "\n".join(textwrap.wrap(label, width, break_long_words=False, break_on_hyphens=False)) or label


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on CI machines or servers
    import matplotlib.pyplot as plt

    return plt


def _title(title: str, shared: str, width: int = 80) -> str:
    """A title, with the settings the rows share (left out of the row labels) on the lines below it."""
    return title + (f"\n{wrap('shared settings: ' + shared, width)}" if shared else "")


def sweep_plots(table: Table, knob: str) -> list[tuple]:
    """(matplotlib figure, name, caption) per task: score vs `knob` (alpha or k), one line per method, pair and the
    other settings, the 95% interval (±1.96 stderr) as a band, the plain target as a dashed line, the legend below
    the axes (never over the data). Only lines with 2+ points."""
    figures = []
    for column in table.columns:
        lines: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        identity: dict[str, tuple[str, dict]] = {}
        plain = []
        for i, run in enumerate(table.rows):
            cell = table.cells.get((i, column))
            if cell is None or cell.value is None:
                continue
            if run.method == "plain":
                plain.append(cell.value)
            if run.hyper.get(knob) is None:
                continue
            fixed = {k: v for k, v in _settings(run.hyper).items() if k != knob}
            key = repr((run.method, _pair(run), sorted(fixed.items(), key=str)))
            identity[key] = (run.method, f"{run.method} {_pair(run)}", fixed)
            lines[key].append((float(run.hyper[knob]), cell.value, 1.96 * (cell.stderr or 0.0)))
        lines = {key: sorted(points) for key, points in lines.items() if len({p[0] for p in points}) > 1}
        if not lines:
            continue
        labels, shared = distinct_labels([identity[key] for key in lines])
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
        knob_values = set()
        for n, (label, points) in enumerate(zip(labels, lines.values())):
            xs, ys, half = zip(*points)
            knob_values.update(xs)
            style = {"marker": "osD^v<>"[n % 7], "linestyle": ("-", "--", "-.", ":")[n % 4]}  # equal lines stay visible
            ax.plot(xs, ys, label=wrap(label, 70), **style)
            ax.fill_between(xs, [y - h for y, h in zip(ys, half)], [y + h for y, h in zip(ys, half)], alpha=0.2)
        for value in plain[:1]:
            ax.axhline(value, linestyle="--", color="grey", label="plain target")
        if len(knob_values) <= 8:
            ax.set_xticks(sorted(knob_values))
        ax.set_xlabel(knob)
        run = next((r for r in table.rows if column in r.tasks), None)
        ax.set_ylabel(run.tasks[column].metric if run else "score")
        ax.set_title(_title(f"{column}: score vs {knob}", shared), fontsize="medium")
        fig.legend(loc="outside lower center", fontsize="small", frameon=False)
        caption = f"{column}: score vs {knob}, a line per method, pair and setting; bands: 95% interval (±1.96 stderr)"
        figures.append((fig, f"{column}_vs_{knob}", caption))
    return figures


def sweep_figures(table: Table, knob: str) -> list:
    from unlock_eval.reports.html import figure_from_matplotlib

    return [figure_from_matplotlib(fig, name, caption) for fig, name, caption in sweep_plots(table, knob)]


def _height(labels: list[str], per_line: float = 0.17, per_row: float = 0.2, base: float = 1.4) -> float:
    """Figure height (inches) for horizontal rows with these (wrapped) labels."""
    return base + sum(per_row + per_line * (label.count("\n") + 1) for label in labels)


def length_plot(table: Table):
    """(figure, labels) of the generated-length box plots per row; None without logged samples."""
    names, shared = row_labels(table)
    data, labels = [], []
    for i in range(len(table.rows)):
        lengths = table.lengths.get(i)  # measured once, when the table was built
        if lengths:
            data.append(lengths)
            labels.append(wrap(names[i]))
    if not data:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, _height(labels)))
    ax.boxplot(data, orientation="horizontal", tick_labels=labels)
    ax.invert_yaxis()  # the table's order, top to bottom
    ax.tick_params(axis="y", labelsize="small")
    ax.set_xlabel(f"generated length ({table.length_unit})")
    ax.set_title(_title("generated length per run", shared), fontsize="medium")
    fig.tight_layout()
    return fig, labels


def length_figure(table: Table):
    """Box plots of the generated length per row, in the table's unit; None without logged samples."""
    from unlock_eval.reports.html import figure_from_matplotlib

    plot = length_plot(table)
    if plot is None:
        return None
    caption = f"generated length per run ({table.length_unit})"
    return figure_from_matplotlib(plot[0], "generated_length", caption)


def _annotate_bars(fig, panels: list[tuple]) -> None:
    """Write each bar's value (and its remark) just right of the bar, and widen each panel's x axis until every text
    fits inside it: a zero still reads "0%" or "0.000", so a panel is never blank. `panels`: (axes, values, texts,
    share)."""
    notes = []
    for ax, values, texts, share in panels:
        top = max(values, default=0)
        ax.set_xlim(0, 1 if share or top <= 0 else top * 1.15)
        at = [(value, y) for y, value in enumerate(values)]
        notes.append([ax.annotate(text, xy, xytext=(3, 0), textcoords="offset points", va="center", fontsize="x-small")
                      for text, xy in zip(texts, at)])  # fmt: skip
    renderer = fig.canvas.get_renderer()
    for _ in range(3):  # the texts' widths are fixed in points; an axis stretches until its widest text fits
        fig.canvas.draw()
        stretched = False
        for (ax, values, _, _), texts in zip(panels, notes):
            box, right = ax.get_window_extent(renderer), ax.get_xlim()[1]
            needed = right
            for note, value in zip(texts, values):
                width = note.get_window_extent(renderer).width + 6
                if width < box.width:
                    needed = max(needed, value * box.width / (box.width - width))
            if needed > right * 1.001:
                ax.set_xlim(0, needed)
                stretched = True
        if not stretched:
            break
    for ax, _, _, share in panels:
        if share:
            ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25%", "50%", "75%", "100%"])


def behaviour_plot(table: Table):
    """(figure, labels) of the behaviour panels; None without logged samples."""
    rows = sorted(table.behaviour.items())
    if not rows:
        return None
    names, shared = row_labels(table)
    labels = [wrap(names[i]) for i, _ in rows]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(14, _height(labels, base=1.6)), sharey=True)
    behaviours = [b for _, b in rows]
    panels = [
        ("step-structured share", [b.step_structured for b in behaviours], True,
         [f"{b.step_structured:.0%}" for b in behaviours]),
        ("degenerate share (most common reason)", [b.degenerate for b in behaviours], True,
         [f"{b.degenerate:.0%}" + (f" {next(iter(b.degenerate_reasons))}" if b.degenerate_reasons else "")
          for b in behaviours]),
        ("repetition (share of repeated 4-grams)", [b.repetition for b in behaviours], False,
         [f"{b.repetition:.3f}" for b in behaviours]),
        ("first-word entropy, bits (top words)", [b.first_word_entropy for b in behaviours], False,
         [f"{b.first_word_entropy:.2f}: {b.top_words_text(2)}" for b in behaviours]),
    ]  # fmt: skip
    for ax, (title, values, _, _) in zip(axes, panels):
        ax.barh(range(len(rows)), values)
        ax.set_title(title, fontsize="small")
    axes[0].set_yticks(range(len(rows)), labels, fontsize="small")
    axes[0].invert_yaxis()
    fig.suptitle(_title("behaviour per run", shared, 160), fontsize="medium")
    fig.tight_layout()
    _annotate_bars(fig, [(ax, values, texts, share) for ax, (_, values, share, texts) in zip(axes, panels)])
    return fig, labels


def behaviour_figure(table: Table):
    """Per row: share of step-structured outputs, share of degenerate outputs (with the most common reason),
    repetition, and the first-word entropy with the most common first words, each bar labelled with its value;
    None without logged samples."""
    from unlock_eval.reports.html import figure_from_matplotlib

    plot = behaviour_plot(table)
    if plot is None:
        return None
    caption = (
        "behaviour per run: step-structured outputs, degenerate outputs (most common reason), repetition, first "
        "generated word (entropy, top words)"
    )
    return figure_from_matplotlib(plot[0], "behaviour", caption)


def diagnosis_figure(d: Diagnosis):
    """Held-out R², CKA and the cosine (with its interval and chance band) against relative depth (a matplotlib
    figure; the caller saves and closes it)."""
    from unlock_eval.methods.unlock.measures import chance_cosine

    plt = _pyplot()
    depth = [r.relative_depth for r in d.rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, layout="constrained")
    top.plot(depth, [r.heldout_r2_k for r in d.rows], marker="o", label=f"held-out R², k={d.k} coordinates")
    top.plot(depth, [r.heldout_r2_full for r in d.rows], marker=".", label="held-out R², full states")
    top.plot(depth, [r.cka for r in d.rows], marker="s", label="CKA")
    top.plot(depth, [r.cka_chance for r in d.rows], linestyle=":", color="grey", label="CKA, shuffled pairs")
    for k, rows in d.sweep_k.items():
        if k != d.k:
            top.plot(depth, [r.heldout_r2_k for r in rows], alpha=0.5, linewidth=1, label=f"held-out R², k={k}")
    top.axhline(0, color="black", linewidth=0.5)
    top.set_ylabel("R² / CKA")
    outside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1), "fontsize": "x-small"}  # beside the data, never on it
    top.legend(**outside)
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
    bottom.legend(**outside)
    fig.suptitle(f"{d.source} → {d.target} (n={d.n}, k={d.k})")
    return fig


def report_figures(table: Table) -> list:
    from unlock_eval.reports import progress

    progress.info("report: drawing the figures")
    figures = sweep_figures(table, "alpha") + sweep_figures(table, "k")
    extra = [length_figure(table), behaviour_figure(table)]
    return figures + [figure for figure in extra if figure is not None]
