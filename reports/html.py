"""The self-contained HTML report page: one file with the table, notes and figures inlined as data URIs."""

from __future__ import annotations

import base64
import html
import io
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The page may load nothing from anywhere and run no script; the browser enforces it (images come as data: URIs).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #999; padding: 0.25em 0.6em; }
th { background: #eee; }
tbody tr:nth-child(even) { background: #f7f7f7; }
td[style*="right"], td.num { text-align: right; font-family: monospace, monospace; font-variant-numeric: tabular-nums; }
td b, td .best, td.best { font-weight: bold; background: #dfd; }
figure { margin: 2em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
pre { font-size: 0.8em; overflow-x: auto; background: #f7f7f7; padding: 0.5em; }
.notes, .meta { font-size: 0.9em; color: #555; } .meta dt { font-weight: bold; float: left; margin-right: 0.5em; }
"""


@dataclass(frozen=True)
class Figure:
    name: str
    caption: str
    png: bytes
    svg: str


def figure_from_matplotlib(fig, name: str, caption: str) -> Figure:
    """Render `fig` to PNG and SVG (savefig picks the Agg/SVG canvas itself: no display needed), then close it."""
    png, svg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(svg, format="svg", bbox_inches="tight", metadata={"Date": None})
    pyplot = sys.modules.get("matplotlib.pyplot")  # a figure can only be pyplot-managed once pyplot is imported
    if pyplot is not None:
        pyplot.close(fig)
    return Figure(name=name, caption=caption, png=png.getvalue(), svg=svg.getvalue().decode("utf-8"))


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _figure_html(f: Figure) -> str:
    cap, fname = html.escape(f.caption), re.sub(r"[^\w.-]+", "_", f.name) or "figure"
    svg = _data_uri("image/svg+xml", f.svg.encode("utf-8"))
    return (
        f'<figure id="fig-{html.escape(fname)}">\n<img src="{_data_uri("image/png", f.png)}" alt="{cap}">\n'
        f'<figcaption>{cap} <a download="{html.escape(fname)}.svg" href="{svg}">[SVG]</a></figcaption>\n</figure>'
    )


def render_page(
    title: str,
    table_html: str,
    figures: list[Figure],
    notes: list[str],
    meta: dict[str, str] | None = None,
    sections: list[tuple[str, str]] = (),
) -> str:
    """A complete HTML5 document. `table_html` is trusted markup (tabulate's html); every other text is escaped.
    `sections` are (heading, preformatted text) blocks placed after the figures."""
    t = html.escape(title)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">\n<head>\n<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>{t}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<h1>{t}</h1>",
        table_html,
    ]
    if notes:
        parts.append('<ol class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ol>")
    parts.extend(_figure_html(f) for f in figures)
    parts.extend(f"<h2>{html.escape(head)}</h2>\n<pre>{html.escape(text)}</pre>" for head, text in sections)
    if meta:
        items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in meta.items())
        parts.append(f'<dl class="meta">{items}</dl>')
    parts.append("</body>\n</html>\n")
    return "\n".join(parts)


def write_page(path: str | os.PathLike, html_text: str) -> Path:
    """Write atomically: a temp file in the same folder, then os.replace (readers never see half a page)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(html_text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
