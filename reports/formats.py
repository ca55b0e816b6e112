"""Rendering a report Table as markdown, CSV, LaTeX or one self-contained HTML page (tables through tabulate)."""

from __future__ import annotations

import csv
import io

from tabulate import tabulate

from unlock_eval.reports.behaviour import NGRAM
from unlock_eval.reports.chance import CHANCE_DRAWS, Scoring
from unlock_eval.reports.degeneration import DEGENERATE_LEGEND, STEPS_LEGEND
from unlock_eval.reports.runs import HYPER_KEYS, VARYING_KEYS
from unlock_eval.reports.stats import LEGEND, format_delta
from unlock_eval.reports.table import EXTRAS, Cell, Table

FORMATS = ("md", "csv", "latex", "html")
EXTRA_HEADERS = {
    "answer_found": "answer found",
    "steps": "step-structured",
    "degenerate": "degenerate",
    "repetition": "repetition",
    "first_word_entropy": "first-word H (bits)",
    "setup_s": "set-up s",
    "extra_passes": "extra passes/token",
}
_BOLD = {"md": "**{}**", "latex": "\\textbf{{{}}}", "html": "<b>{}</b>"}


_LATEX = {"\\": "\\textbackslash{}", "_": "\\_", "%": "\\%", "&": "\\&", "#": "\\#", "$": "\\$"}


def _esc(text: str, fmt: str) -> str:
    """LaTeX special characters escaped (task names hold underscores); other formats unchanged."""
    if fmt != "latex":
        return text
    return "".join(_LATEX.get(ch, ch) for ch in text)


def _number(cell: Cell, fmt: str, digits: int | None = 3) -> str:
    if cell.value is None:
        return ""
    if digits is None:  # counts
        text = f"{cell.value:g}"
    else:
        text = f"{cell.value:.{digits}f}" + (f" ± {cell.stderr:.{digits}f}" if cell.stderr is not None else "")
    return _BOLD[fmt].format(text) if cell.best and fmt in _BOLD else text


def grid(table: Table, fmt: str) -> tuple[list[str], list[list[str]]]:
    """Headers and text rows: the run's identity, score and Δ per task column, then the extras."""
    hyper = [k for k in HYPER_KEYS if k != "capability" and any(r.hyper.get(k) is not None for r in table.rows)]
    hyper = [k for k in hyper if k not in VARYING_KEYS or len({r.hyper.get(k) for r in table.rows}) > 1]
    headers = ["method", "source → target", *hyper]
    checked, referenced = set(table.checked_columns), set(table.reference_columns)
    for column in table.columns:  # a math task leads with its strict accuracy, then the lenient one and its Δ
        if column in checked:
            headers += [f"{column} strict", f"{column} lenient", f"Δ {column}"]
            headers += [f"{column} reference"] if column in referenced else []  # acc_reference, the paper's reading
            headers += [f"{column} chance", "fallback share"]
        else:
            headers += [column, f"Δ {column}"]
    headers += [f"gen len ({table.length_unit})", *(EXTRA_HEADERS[name] for name in EXTRAS[1:])]
    rows = []
    for i, run in enumerate(table.rows):
        pair = run.target if run.source in (None, run.target) else f"{run.source} → {run.target}"
        method = f"{run.method} ({table.marks[i]})" if i in table.marks else run.method
        row = [method, pair, *("" if run.hyper.get(k) is None else str(run.hyper[k]) for k in hyper)]
        for column in table.columns:
            cell = table.cells.get((i, column), Cell(None))
            scored = table.scoring.get((i, column))
            at_chance = scored is not None and scored.at_chance
            strict, chance, fallback = _scoring_cells(scored)
            if column in checked:
                row.append(strict)
            row.append(_number(cell, fmt) + (_AT_CHANCE[fmt] if at_chance and cell.value is not None else ""))
            row.append("baseline" if table.baseline.get(i) == i else (format_delta(cell.delta) if cell.delta else ""))
            if column in referenced:
                row.append("" if scored is None or scored.reference is None else f"{scored.reference:.3f}")
            if column in checked:
                row += [chance, fallback]
        digits = {
            "gen_len": 1,
            "answer_found": 3,
            "steps": 2,
            "degenerate": 2,
            "repetition": 3,
            "first_word_entropy": 2,
        }
        digits.update(setup_s=1, extra_passes=None)
        row += [_number(table.extras[(i, name)], fmt, digits[name]) for name in EXTRAS]
        rows.append([value if value.startswith("\\textbf") else _esc(value, fmt) for value in row])
    return [_esc(h, fmt) for h in headers], rows


_AT_CHANCE = {"md": " ≈", "html": " ≈", "latex": " (at chance)"}  # a lenient score not above its chance range


def _scoring_cells(s: Scoring | None) -> list[str]:
    """strict accuracy, chance level [interval] of the lenient one, share of correct answers from a fallback rule."""
    if s is None:
        return ["", "", ""]
    c = s.chance
    return [
        f"{s.strict:.3f}",
        "" if c is None else f"{c.level:.3f} [{c.low:.3f}, {c.high:.3f}]",
        "" if s.fallback_share is None else f"{s.fallback_share:.0%}",
    ]


def footnotes(table: Table) -> list[str]:
    bases = sorted({table.rows[j].label for j in table.baseline.values() if j is not None})
    notes = [f"Δ: against {' / '.join(bases) if bases else 'no baseline (no plain run given)'}", LEGEND]
    notes.append(f"gen len: mean generated length in {table.length_unit}; best score per task column in bold")
    notes.append(
        f"behaviour (logged samples), shares of outputs: {STEPS_LEGEND}; {DEGENERATE_LEGEND}; repetition = share of "
        f"repeated word {NGRAM}-grams; first-word H = entropy of the first generated word over documents (lower = "
        "sharper; top words in the behaviour figure and `unlock-eval behaviour`)"
    )
    if table.checked_columns:
        notes.append(
            "math tasks: the score is the lenient accuracy (any extraction rule, fallbacks included); strict = only "
            "answers a marker rule found (<atok>, \\boxed{}, ####, Final Answer:, the answer is); fallback share = "
            "share of the correct answers that a fallback rule (last number, bare option letter) found; chance = "
            f"lenient hits of each output against other documents' golds ({CHANCE_DRAWS} fixed-seed draws) "
            "[95% range]; ≈ marks a lenient score not above its chance range"
        )
    if table.reference_columns:
        notes.append(
            "reference (acc_reference): the accuracy with each answer read the way the paper's official code reads it "
            "(unlock_eval.checker.reference), judged by the same checker within the reference's 3 s: it differs from "
            "lenient only in how the answer is read"
        )
    if any((run.record or {}).get("details", {}).get("model_reused") for run in table.rows):
        notes.append("set-up s: blank where a sweep point reused the model an earlier point of its sweep loaded")
    return notes + table.notes


def render(table: Table, fmt: str, figures=None, title: str = "unlock-eval report", sections=()) -> str:
    """The table in one of FORMATS; html embeds `figures` (reports.html.Figure) and the footnotes; md and html add
    `sections`, (heading, preformatted text) pairs."""
    if fmt == "csv":
        records = table.records()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buffer.getvalue()
    headers, rows = grid(table, fmt)
    if fmt == "md":
        body = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
        blocks = "".join(f"\n## {head}\n\n```\n{text}\n```\n" for head, text in sections)
        return body + "\n\n" + "\n".join(f"- {note}" for note in footnotes(table)) + "\n" + blocks
    if fmt == "latex":
        return tabulate(rows, headers=headers, tablefmt="latex_raw", disable_numparse=True) + "\n"
    from unlock_eval.reports.html import report_page  # the page's own layout, provenance and figures

    return report_page(table, headers, rows, footnotes(table), title, list(figures or []), list(sections))
