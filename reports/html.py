"""The self-contained HTML report page: one file with the tables, notes, figures (inline SVG) and where the numbers
come from; it fits the window from 1024 px up and loads nothing."""

from __future__ import annotations

import base64
import html
import io
import os
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from unlock_eval.outputs import write_atomic

if TYPE_CHECKING:
    from unlock_eval.reports.table import Provenance, Table

# The page may load nothing from anywhere and run no script; the browser enforces it (downloads are data: URIs).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

# The prose keeps a readable measure; the tables and figures may use the whole window (no page-level scrolling: a
# table wider than the window scrolls inside its own box).
_CSS = """
:root { --prose: 75rem; }
body { font-family: system-ui, sans-serif; margin: 1.2rem 1rem; color: #222; line-height: 1.35; }
h1 { font-size: 1.5rem; margin: 0 0 0.3rem; } h2 { font-size: 1.15rem; margin: 1.6rem 0 0.4rem; }
h3 { font-size: 1rem; margin: 1rem 0 0.3rem; }
p, ol, dl { max-width: var(--prose); }
.summary { color: #555; margin: 0 0 0.6rem; }
.scroll { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; margin: 0.4rem 0 0.8rem; font-size: 0.8rem; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.4em; vertical-align: top; }
th { background: #eee; font-weight: 600; text-align: center; vertical-align: bottom; }
th.task { background: #dde6f0; }
tbody tr:nth-child(even) { background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
@media (max-width: 1199px) {
  table.report { font-size: 0.74rem; } table.report th, table.report td { padding: 0.15em 0.3em; }
}
.nw, .pm { white-space: nowrap; }
@media (min-width: 1200px) { td.delta { white-space: nowrap; } }
td b { font-weight: 700; background: #d8f0d8; padding: 0 0.15em; }
.shared { font-size: 0.85rem; color: #444; }
.notes { font-size: 0.85rem; color: #444; padding-left: 1.4rem; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 36rem), 1fr)); gap: 1rem; }
figure { margin: 0; min-width: 0; } figure.wide { grid-column: 1 / -1; }
figure svg { display: block; max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.85rem; color: #444; margin-top: 0.2rem; }
pre { font-size: 0.8em; overflow-x: auto; background: #f7f7f7; padding: 0.5em; }
.meta dt { font-weight: 600; float: left; clear: left; margin-right: 0.5em; }
.meta dd { margin: 0 0 0.2em 0; }
table.prov { font-size: 0.78rem; } table.prov td { max-width: 60rem; }
code { font-size: 0.95em; overflow-wrap: anywhere; }
"""

_WIDE_PX = 900  # a figure at least this wide (its natural size) takes a whole row of the figure grid


@dataclass(frozen=True)
class Figure:
    name: str
    caption: str
    png: bytes
    svg: str


def figure_from_matplotlib(fig, name: str, caption: str) -> Figure:
    """Render `fig` to PNG and SVG (savefig picks the Agg/SVG canvas itself: no display needed), then close it.
    The SVG keeps its text as text (readable, searchable, selectable on the page); its ids are deterministic."""
    import matplotlib

    png, svg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "unlock-eval"}):
        fig.savefig(svg, format="svg", bbox_inches="tight", metadata={"Date": None})
    pyplot = sys.modules.get("matplotlib.pyplot")  # a figure can only be pyplot-managed once pyplot is imported
    if pyplot is not None:
        pyplot.close(fig)
    return Figure(name=name, caption=caption, png=png.getvalue(), svg=svg.getvalue().decode("utf-8"))


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def inline_svg(svg: str, prefix: str, label: str) -> str:
    """A standalone SVG document as an element of the page: no XML prolog, DOCTYPE, metadata or namespace
    declarations (HTML knows them), every id prefixed so that figures on one page never share one."""
    svg = re.sub(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r'(href="|url\()#([^")]+)', rf"\1#{prefix}-\2", svg)
    return svg.strip().replace("<svg ", f'<svg role="img" aria-label="{html.escape(label)}" ', 1)


def _svg_width_px(svg: str) -> float:
    match = re.search(r'<svg[^>]*\bwidth="([\d.]+)(pt|px)?"', svg)
    if not match:
        return 0.0
    return float(match.group(1)) * (4 / 3 if match.group(2) in (None, "pt") else 1)


def _figure_html(f: Figure) -> str:
    cap, fname = html.escape(f.caption), re.sub(r"[^\w.-]+", "_", f.name) or "figure"
    download = _data_uri("image/svg+xml", f.svg.encode("utf-8"))
    wide = ' class="wide"' if _svg_width_px(f.svg) >= _WIDE_PX else ""
    return (
        f'<figure id="fig-{html.escape(fname)}"{wide}>\n{inline_svg(f.svg, f"fig-{fname}", f.caption)}\n'
        f'<figcaption>{cap} <a download="{html.escape(fname)}.svg" href="{download}">[SVG]</a></figcaption>\n'
        "</figure>"
    )


def render_page(
    title: str,
    table_html: str,
    figures: list[Figure],
    notes: list[str],
    meta: dict[str, str] | None = None,
    sections: list[tuple[str, str]] = (),
    summary: str = "",
    provenance_html: str = "",
) -> str:
    """A complete HTML5 document. `table_html` and `provenance_html` are trusted markup (built here or by
    tabulate); every other text is escaped. `sections` are (heading, preformatted text) blocks after the figures."""
    t = html.escape(title)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">\n<head>\n<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>{t}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<h1>{t}</h1>",
    ]
    if summary:
        parts.append(f'<p class="summary">{html.escape(summary)}</p>')
    bare = table_html.lstrip().startswith("<table")  # a lone table (tabulate's): it scrolls in its own box if need be
    parts.append(f'<div class="scroll">{table_html}</div>' if bare else table_html)
    if notes:
        parts.append('<ol class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ol>")
    if figures:
        parts.append('<div class="figures">\n' + "\n".join(_figure_html(f) for f in figures) + "\n</div>")
    parts.extend(f"<h2>{html.escape(head)}</h2>\n<pre>{html.escape(text)}</pre>" for head, text in sections)
    if meta:
        items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in meta.items())
        parts.append(f'<dl class="meta">{items}</dl>')
    if provenance_html:
        parts.append(provenance_html)
    parts.append("</body>\n</html>\n")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------- the report's tables
def _cell(value: str) -> str:
    """A grid cell as HTML: escaped, a leading <b>…</b> (the best score) kept as markup; a value's "± stderr ≈" or
    "[low, high]" kept on one line of its own, so a narrow cell breaks after the value, nowhere else."""
    match = re.fullmatch(r"<b>(.*?)</b>(.*)", value, re.S)
    text = match.group(1) + match.group(2) if match else value
    head, _, rest = text.partition(" ")
    if rest.startswith(("±", "[")) and (match is None or len(head) <= len(match.group(1))):
        shown = f"<b>{html.escape(head)}</b>" if match else html.escape(head)
        return f'{shown} <span class="pm">{html.escape(rest)}</span>'
    return f"<b>{html.escape(match.group(1))}</b>{html.escape(match.group(2))}" if match else html.escape(value)


def _label_html(label: str) -> str:
    """A run's label: it breaks between its words, never inside a model name at a hyphen."""
    return " ".join(
        f'<span class="nw">{html.escape(w)}</span>' if "-" in w else html.escape(w) for w in label.split(" ")
    )


def _pair_cell(value: str) -> str:
    """source → target on at most two lines: a model name is never broken at its hyphens."""
    return " → ".join(f'<span class="nw">{html.escape(part)}</span>' for part in value.split(" → "))


def _groups(headers: list[str], columns: list[str]) -> tuple[int, list[tuple[str, list[tuple[int, str]]]], int]:
    """Where the grid's identity columns end, the task groups [(task, [(index, short header)])], where the extras
    start. A column after the first task's that names no task (fallback share) belongs to the task before it."""
    extras_at = next((i for i, h in enumerate(headers) if h.startswith("gen len")), len(headers))
    names = sorted(columns, key=len, reverse=True)  # arith_unlock_dev before arith_unlock

    def task_of(header: str) -> tuple[str, str] | None:
        for c in names:
            if header == c:
                return c, "score"
            if header == f"Δ {c}":
                return c, "Δ"
            if header.startswith(c + " "):
                return c, header[len(c) + 1 :]
        return None

    groups: list[tuple[str, list[tuple[int, str]]]] = []
    first = None
    for i, header in enumerate(headers[:extras_at]):
        found = task_of(header)
        if found is None and first is None:
            continue  # identity
        if first is None:
            first = i
        if found is None:
            found = groups[-1][0], header  # "fallback share": the task it follows
        if not groups or groups[-1][0] != found[0]:
            groups.append((found[0], []))
        groups[-1][1].append((i, found[1]))
    return (extras_at if first is None else first), groups, extras_at


def _rows_html(rows: list[list[str]], indices: list[int], kinds: dict[int, str]) -> str:
    """Table body rows of these grid columns; `kinds`: column -> "pair", "label", "num" or "delta" (a Δ cell: its
    text kept exactly as the other formats write it)."""
    out = []
    for row in rows:
        cells = []
        for i in indices:
            kind = kinds.get(i, "")
            if kind == "pair":
                cells.append(f'<td class="pair">{_pair_cell(row[i])}</td>')
            elif kind == "label":
                cells.append(f"<td>{_label_html(row[i])}</td>")
            elif kind == "delta":
                cells.append(f'<td class="num delta">{html.escape(row[i])}</td>')
            else:
                cells.append(f'<td class="{kind}">{_cell(row[i])}</td>' if kind else f"<td>{_cell(row[i])}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "<tbody>\n" + "\n".join(out) + "\n</tbody>"


def _hoist(methods: list[str], rows: list[list[str]], identity, keep: set) -> tuple[list[int], list[int]]:
    """The identity columns to show, and the settings columns to say once above the table instead: those with one
    value, held by every row of each method that has it (with two rows or more; a lone row keeps its columns)."""
    from unlock_eval.reports.plots import same_where_present

    shown, hoisted = [], []
    for j in identity:
        fact = (
            j not in keep and len(rows) > 1 and same_where_present([(m, {j: r[j]}) for m, r in zip(methods, rows)], j)
        )
        (hoisted if fact else shown).append(j)
    return shown, hoisted


def tables_html(table: Table, headers: list[str], rows: list[list[str]]) -> str:
    """The grid as two tables that fit the window together: the scores (the run's identity, then per task its score,
    Δ and checker columns under one task heading; settings that are the same in every row having them said once
    above), and the outputs and cost per run (the extras), each row named by its distinct label."""
    from unlock_eval.reports.plots import row_labels, shared_text

    pair_at = headers.index("source → target") if "source → target" in headers else None
    identity_end, groups, extras_at = _groups(headers, table.columns)
    identity, hoisted = _hoist([run.method for run in table.rows], rows, range(identity_end), {0, pair_at})
    top = "".join(f'<th rowspan="2">{html.escape(headers[i])}</th>' for i in identity)
    top += "".join(f'<th class="task" colspan="{len(cols)}">{html.escape(task)}</th>' for task, cols in groups)
    sub = "".join(f"<th>{html.escape(short)}</th>" for _, cols in groups for _, short in cols)
    kinds = {i: "delta" if short == "Δ" else "num" for _, cols in groups for i, short in cols}
    kinds.update({pair_at: "pair"} if pair_at is not None else {})
    scored = [i for _, cols in groups for i, _ in cols]
    parts = ["<h2>Scores</h2>"]
    if hoisted:  # a setting the same in every row that has it is a fact about the table: said once, above it
        items = [(run.method, {headers[j]: row[j] for j in hoisted}) for run, row in zip(table.rows, rows)]
        shared = shared_text(items, [headers[j] for j in hoisted])
        parts.append(f'<p class="shared">Settings, the same in every row that has them: {html.escape(shared)}</p>')
    parts.append(
        f'<div class="scroll"><table class="report scores">\n<thead><tr>{top}</tr>\n<tr>{sub}</tr></thead>\n'
        f"{_rows_html(rows, identity + scored, kinds)}\n</table></div>"
    )
    extras = list(range(extras_at, len(headers)))
    if extras:
        labels, _ = row_labels(table)
        extra_rows = [[label, *row[extras_at:]] for label, row in zip(labels, rows)]
        head = "<th>run</th>" + "".join(f"<th>{html.escape(headers[i])}</th>" for i in extras)
        columns = list(range(len(extras) + 1))
        parts.append("<h2>Outputs and cost per run</h2>")
        parts.append(
            f'<div class="scroll"><table class="report extras">\n<thead><tr>{head}</tr></thead>\n'
            f"{_rows_html(extra_rows, columns, {0: 'label'} | dict.fromkeys(columns[1:], 'num'))}\n</table></div>"
        )
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------- provenance
def _when(stamp) -> str:
    try:
        return datetime.fromtimestamp(float(stamp), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return "date not recorded"


def _count(n) -> str:
    return "?" if n is None else f"{n:g}" if isinstance(n, float) else str(n)


def _limit(limit) -> str:
    return "none (every document)" if limit in (None, "") else _count(limit)


def _software(software: dict[str, str]) -> str:
    return ", ".join(f"{name} {value}" for name, value in software.items())


def provenance_html(table: Table, p: Provenance) -> str:
    """Where the numbers come from: when and by what the page was made; per task the documents scored and the
    `--limit`; per results file the rows it feeds, its command as lm-eval recorded it, software and machine."""
    from unlock_eval.reports.plots import row_labels

    e = html.escape
    labels, _ = row_labels(table)
    out = ['<section id="provenance">', "<h2>Where these numbers come from</h2>", '<dl class="meta">']
    out.append(f"<dt>generated</dt><dd>{e(p.generated)} by unlock-eval {e(p.software.get('unlock-eval', '?'))}</dd>")
    here = {k: v for k, v in p.software.items() if k != "unlock-eval"}
    out.append(f"<dt>report machine</dt><dd>{e(p.machine)}; {e(_software(here))}</dd>")
    out.append(f"<dt>results files</dt><dd>{len(p.sources)}, listed below with the rows each one feeds</dd>")
    software, machines = {_software(s.software) for s in p.sources}, {s.machine for s in p.sources}
    per_run = len(software) > 1 or len(machines) > 1  # else said once, here
    if not per_run and p.sources:
        out.append(f"<dt>runs' software</dt><dd>{e(next(iter(software)) or 'not recorded')} (every run)</dd>")
        out.append(f"<dt>runs' machine</dt><dd>{e(next(iter(machines)))} (every run)</dd>")
    out.append("</dl>")
    # per task: documents scored (lm-eval's n-samples, effective of original) and --limit, over the files
    per_task: dict[tuple, list[int]] = {}
    for number, s in enumerate(p.sources, 1):
        for task, (scored, total) in s.documents.items():
            per_task.setdefault((task, scored, total, _limit(s.limit)), []).append(number)
    if per_task:
        out.append("<h3>Documents per task</h3>")
        out.append('<div class="scroll"><table class="prov"><thead><tr><th>task</th><th>documents scored</th>'
                   "<th>of</th><th>--limit</th><th>results files</th></tr></thead><tbody>")  # fmt: skip
        for (task, scored, total, limit), numbers in sorted(per_task.items(), key=lambda kv: str(kv[0])):
            files = ", ".join(f"#{n}" for n in numbers)
            out.append(f'<tr><td>{e(task)}</td><td class="num">{_count(scored)}</td><td class="num">{_count(total)}'
                       f"</td><td>{e(limit)}</td><td>{files}</td></tr>")  # fmt: skip
        out.append("</tbody></table></div>")
    out.append("<h3>Runs: results files and commands (as lm-eval recorded them)</h3>")
    out.append('<div class="scroll"><table class="prov"><thead><tr><th>#</th><th>rows</th><th>results file, run date,'
               " time</th><th>command</th></tr></thead><tbody>")  # fmt: skip
    for number, s in enumerate(p.sources, 1):
        rows = "<br>".join(_label_html(labels[i]) for i in s.rows)
        took = f", {s.seconds:.0f} s" if s.seconds is not None else ""
        extra = f"<br>{e(_software(s.software) or 'software not recorded')}; {e(s.machine)}" if per_run else ""
        out.append(f"<tr><td>{number}</td><td>{rows}</td><td><code>{e(s.file)}</code><br>{_when(s.date)}{took}</td>"
                   f"<td><code>{e(s.command)}</code>{extra}</td></tr>")  # fmt: skip
    out.append("</tbody></table></div>\n</section>")
    return "\n".join(out)


def report_page(
    table: Table,
    headers: list[str],
    rows: list[list[str]],
    notes: list[str],
    title: str,
    figures: list[Figure],
    sections: list[tuple[str, str]] = (),
) -> str:
    """The report Table as one page: its grid (formats.grid(table, "html")) as tables that fit the window, the
    notes, the figures and the provenance block."""
    from unlock_eval.reports.table import provenance

    p = provenance(table)
    documents = sorted({n for s in p.sources for n, _ in s.documents.values() if n is not None})
    counted = f"{'/'.join(map(_count, documents))} documents per task" if documents else "documents not recorded"
    summary = (
        f"{len(table.rows)} runs, {len(table.columns)} task columns, {counted}; generated {p.generated} by "
        f"unlock-eval {p.software.get('unlock-eval', '?')}. Where the numbers come from: at the end of the page."
    )
    return render_page(
        title,
        tables_html(table, headers, rows),
        figures,
        notes,
        sections=list(sections),
        summary=summary,
        provenance_html=provenance_html(table, p),
    )


def write_page(path: str | os.PathLike, html_text: str) -> Path:
    """Write a page atomically (unlock_eval.outputs: readers never see half a page, a killed writer's leftover goes)."""
    return write_atomic(path, html_text)
