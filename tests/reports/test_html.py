"""The HTML report page: self-contained (no network, no script), figures inline as SVG, and rendered for real by
headless chromium."""

import base64
import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET

import matplotlib

matplotlib.use("Agg")  # headless: set before pyplot is imported

import pytest  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from tabulate import tabulate  # noqa: E402

from unlock_eval.reports.html import (  # noqa: E402
    CSP,
    Figure,
    figure_from_matplotlib,
    inline_svg,
    render_page,
    write_page,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MODELS = ["smollm2-135m", "gemma3-270m", "steer-alpha-0.5"]


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG_MAGIC
    return struct.unpack(">II", png[16:24])  # IHDR: width, height


def make_figures() -> list[Figure]:
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(MODELS, [0.31, 0.42, 0.38])
    ax.set_ylabel("gsm8k exact match")
    bars = figure_from_matplotlib(fig, "accuracy bars", "Accuracy per model <gsm8k>")
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 0.25, 0.5, 1.0], [0.31, 0.35, 0.38, 0.33], marker="o")
    ax.set_xlabel("alpha")
    line = figure_from_matplotlib(fig, "alpha sweep", "Steering strength sweep")
    return [bars, line]


def make_page(figures: list[Figure]) -> str:
    rows = [[m, f"{acc:.3f}", f"{se:.3f}"] for m, acc, se in zip(MODELS, [0.31, 0.42, 0.38], [0.012, 0.013, 0.0125])]
    rows[1][1] = "<b>0.420</b>"  # the caller marks the best value per column ("unsafehtml" keeps the markup)
    table = tabulate(
        rows, headers=["model", "acc", "stderr"], tablefmt="unsafehtml", colalign=("left", "right", "right")
    )
    notes = ["stderr is the bootstrap standard error", "a <b> in a note is text, not markup"]
    return render_page("Leaderboard <gsm8k> & more", table, figures, notes, meta={"commit": "abc123"})


def data_uris(page: str, mime: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(rf"data:{re.escape(mime)};base64,([A-Za-z0-9+/=]+)", page)]


@pytest.fixture(scope="module")
def figures() -> list[Figure]:
    return make_figures()


def test_figure_from_matplotlib_renders_png_and_svg_and_closes():
    fig = plt.figure()
    plt.plot([1, 2, 3])
    f = figure_from_matplotlib(fig, "n", "c")
    assert not plt.fignum_exists(fig.number)
    assert f.png.startswith(PNG_MAGIC) and min(png_size(f.png)) > 0
    assert ET.fromstring(f.svg.encode()).tag == "{http://www.w3.org/2000/svg}svg"


def test_page_is_self_contained_and_escaped(figures):
    page = make_page(figures)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert f'content="{CSP}"' in page
    assert "<title>Leaderboard &lt;gsm8k&gt; &amp; more</title>" in page
    assert "<li>a &lt;b&gt; in a note is text, not markup</li>" in page
    assert "Accuracy per model &lt;gsm8k&gt;" in page and "<dd>abc123</dd>" in page
    assert '<td style="text-align: right;"><b>0.420</b></td>' in page  # the table fragment is kept as given
    assert page.count("<svg ") == len(figures) and "<img" not in page  # inline: the figures' text is text
    svgs = data_uris(page, "image/svg+xml")  # the [SVG] downloads: the standalone files, as --plots writes them
    assert svgs == [f.svg.encode("utf-8") for f in figures]
    for svg in svgs:
        assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"
    assert 'download="accuracy_bars.svg"' in page
    assert ">gsm8k exact match</text>" in page  # an axis label, readable in the page


def test_inline_svg_has_no_prolog_and_ids_of_its_own(figures):
    svg = figures[0].svg
    assert "<?xml" in svg and "http://" in svg and 'id="patch_1"' in svg  # what matplotlib writes
    inline = inline_svg(svg, "fig-a", "caption <x>")
    assert inline.startswith('<svg role="img" aria-label="caption &lt;x&gt;" ')
    assert "<?xml" not in inline and "<!DOCTYPE" not in inline and "http://" not in inline
    ids = re.findall(r'\bid="([^"]+)"', inline)
    assert ids and all(i.startswith("fig-a-") for i in ids)
    refs = re.findall(r'(?:href="|url\()#([^")]+)', inline)
    assert refs and set(refs) <= set(ids)  # every reference points at an id of this figure


def test_write_page_is_atomic_and_overwrites(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")
    assert write_page(target, "<!DOCTYPE html>\nnew é\n") == target
    assert target.read_text(encoding="utf-8") == "<!DOCTYPE html>\nnew é\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left behind


# --- a real browser ------------------------------------------------------------------------------------------------

# The test copy only: allow one inline script, which writes each image's natural size and each inline figure's
# rendered size where --dump-dom shows it.
SIZES_SCRIPT = """<script>
window.addEventListener("load", () => {
  const pre = document.createElement("pre");
  pre.id = "sizes";
  const images = [...document.images].map(i => i.naturalWidth + "x" + i.naturalHeight);
  const svgs = [...document.querySelectorAll("figure > svg")].map(s => s.getBoundingClientRect())
    .map(r => Math.round(r.width) + "x" + Math.round(r.height));
  pre.textContent = images.concat(svgs).join("\\n");
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        msg = "headless chromium not installed: apt-get install -y chromium (make test installs it when CI=true)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


def run_chromium(exe: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"  # a fresh profile for every run
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_page_renders_in_headless_chromium(tmp_path, figures):
    exe = chromium()
    page = make_page(figures)
    real = write_page(tmp_path / "report.html", page)
    probe_html = page.replace(CSP, CSP + "; script-src 'unsafe-inline'").replace("</body>", SIZES_SCRIPT + "\n</body>")
    probe = write_page(tmp_path / "probe.html", probe_html)

    res = run_chromium(exe, tmp_path, "--dump-dom", probe.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    rows = re.findall(r"<tr>(.*?)</tr>", dom, re.S)
    assert len(rows) == 1 + len(MODELS), dom[:2000]
    cells = [[c.strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)] for row in rows]
    assert cells[0] == ["model", "acc", "stderr"]
    assert [c[0] for c in cells[1:]] == MODELS
    assert cells[2][1] == "<b>0.420</b>" and cells[1][1:] == ["0.310", "0.012"]
    sizes = re.search(r'<pre id="sizes">(.*?)</pre>', dom, re.S)
    assert sizes is not None, "the load handler did not run: " + dom[-2000:]
    shown = [tuple(map(int, s.split("x"))) for s in sizes.group(1).split()]
    assert len(shown) == len(figures) and all(w > 0 and h > 0 for w, h in shown)
    for (w, h), f in zip(shown, figures):  # drawn at the size matplotlib gave it (pt -> px), its aspect kept
        width, height = (float(v) * 4 / 3 for v in re.search(r'width="([\d.]+)pt" height="([\d.]+)pt"', f.svg).groups())
        assert abs(w - width) <= 3 and abs(h - height) <= 3, ((w, h), (width, height))  # + its 1 px border

    shot = tmp_path / "page.png"
    res = run_chromium(exe, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", real.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.is_file() and shot.read_bytes()[:8] == PNG_MAGIC and shot.stat().st_size > 10_000
    assert png_size(shot.read_bytes()) == (1200, 1600)
