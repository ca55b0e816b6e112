"""The HTML report page as colleagues get it, from lm-eval-shaped results files of a demo-like comparison (plain,
prompted, logit transfer, native steering and Unlock sweeps over alpha and k, two checker-scored task columns):
rendered by headless chromium at 1024, 1400 and 1920 px (no page-level horizontal scroll, every column visible,
source → target on at most two lines, no two figure labels equal), and checked at the matplotlib level (legend
outside the axes, the repetition panel labelled) and at the data level (provenance, bold only on scores)."""

import json
import logging
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: set before pyplot is imported

import pytest  # noqa: E402

from unlock_eval.reports import report  # noqa: E402
from unlock_eval.reports.formats import render  # noqa: E402
from unlock_eval.reports.html import CSP, write_page  # noqa: E402
from unlock_eval.reports.plots import behaviour_plot, length_plot, report_figures, row_labels, sweep_plots  # noqa: E402

from test_html import chromium, run_chromium  # noqa: E402

SOURCE, TARGET = "acme-lab/smollm2-135m-instruct", "acme-lab/gemma3-270m"  # long names, no tokenizer to be found
N = 30
ENV = """PyTorch version: 2.13.0+cu130
Is debug build: False
OS: Debian GNU/Linux 12 (bookworm) (x86_64)
Python version: 3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0] (64-bit runtime)
Is CUDA available: True
GPU models and configuration: GPU 0: NVIDIA H100 80GB HBM3
CPU:
Architecture:                            x86_64
CPU(s):                                  16
Model name:                              AMD EPYC 9454
"""
TEXTS = [
    "Step 1: 3 + 4 = 7.\nStep 2: 7 * 2 = 14.\nThe final answer is <atok> {gold} </atok>.",
    "Friend 1:\nFriend 2:\nFriend 3:\nThe final answer is <atok> {gold} </atok>.",
    "the the the the the the the the the the the the. The final answer is <atok> {gold} </atok>.",
    "{gold}",
]


def _sample(doc_id: int, text: str, gold: str, correct: bool) -> dict:
    record = {"answer": gold if correct else "0", "rule": "atok", "gold": gold, "correct": correct, "verdict": "x"}
    return {
        "doc_id": doc_id,
        "doc": {"question": f"Ann has {doc_id} apples and buys 4 more: how many?", "gold_answer": gold},
        "resps": [[text]],
        "filtered_resps": [json.dumps(record)],
        "doc_hash": f"h{doc_id}",
        "acc": float(correct),
        "acc_strict": float(correct),
        "answer_found": 1.0,
        "gen_len_pieces": float(len(text.split())),
    }


def _samples(style: int, hits: int) -> list[dict]:
    golds = [str(doc_id + 4) for doc_id in range(N)]
    return [_sample(i, TEXTS[style].format(gold=g), g, i < hits) for i, g in enumerate(golds)]


def _write(folder: Path, stamp: str, config: dict, tasks: dict[str, list[dict]], configs: dict | None = None) -> None:
    """One lm-eval results file (and its samples files) as lm-eval 0.4.13 writes them, trimmed to what is read."""
    folder.mkdir(parents=True, exist_ok=True)
    results = {}
    for task, samples in tasks.items():
        acc = sum(s["acc"] for s in samples) / len(samples)
        results[task] = {"acc,checker": acc, "acc_stderr,checker": 0.02, "acc_strict,checker": acc}
        (folder / f"samples_{task}_{stamp}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    data = {
        "results": results,
        "group_subtasks": {task: [] for task in tasks},
        "configs": configs or {},
        "n-samples": {task: {"original": 300 if "dev" not in task else 40, "effective": N} for task in tasks},
        "config": {
            "batch_size": "32",
            "device": "cuda:0",
            "limit": float(N),
            "gen_kwargs": {"max_gen_toks": 48},
            **config,
        },  # fmt: skip
        "date": 1796436290.0 + len(stamp),
        "pretty_env_info": ENV,
        "transformers_version": "5.23.0",
        "lm_eval_version": "0.4.13",
        "git_hash": "034b319",
        "total_evaluation_time_seconds": "71.8",
    }
    (folder / f"results_{stamp}.json").write_text(json.dumps(data))


def _record(method: str, source: str, hyper: dict, setup: float) -> dict:
    return {
        "schema_version": 1,
        "method": method,
        "models": {"target": {"spec": TARGET}, "source": {"spec": source}},
        "hyperparameters": {"capability": "cot", **hyper},
        "setup_seconds": setup,
        "extra_forward_passes_per_token": 2 if method == "logit_transfer" else 0,
        "details": {"dtypes": {"evaluation": "float32"}},
    }


def write_demo_like(root: Path) -> None:
    plain_args = {"pretrained": TARGET, "dtype": "float32"}
    twin = {"arith_cot_unlock": {"metadata": {"unlock_prompt": {"prompted_of": "arith_unlock"}}}}
    _write(root / "plain", "2026-12-05T02-01-08.000001", {"model": "hf", "model_args": plain_args},
           {"arith_unlock": _samples(0, 2), "arith_cot_unlock": _samples(0, 1)}, twin)  # fmt: skip
    logit = _record("logit_transfer", TARGET, {"lam": 1.0}, 4.5)
    _write(root / "logit", "2026-12-05T02-08-48.000002", {"model": "logit_transfer", "unlock_eval": logit},
           {"arith_unlock": _samples(0, 1)})  # fmt: skip
    steering = {"k": 16, "n": 64, "aggregator": "mean", "mode": "prefill_last", "layers": "all"}
    points = [(0.05, 16), (0.1, 16), (0.2, 16), (0.05, 8)]
    for method, source, style in (("native_steering", TARGET, 1), ("unlock", SOURCE, 2)):
        for number, (alpha, k) in enumerate(points):
            record = _record(method, source, {**steering, "alpha": alpha, "k": k}, 15.3 + number)
            config = {
                "model": "unlock",
                "model_args": {"target": TARGET, "alpha": alpha, "k": k},
                "unlock_eval": record,
            }
            stamp = f"2026-12-05T02-0{number}-41.00000{number}"
            _write(root / method / f"dev_{alpha}_{k}", stamp, config, {"arith_unlock_dev": _samples(style, number)})
            if (alpha, k) == (0.05, 16):  # the chosen point, scored on the test documents
                _write(root / method / "test", stamp.replace("T02", "T03"), config, {"arith_unlock": _samples(3, 1)})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("page")
    write_demo_like(root / "results")
    table = report([root / "results"])
    page = render(table, "html", report_figures(table), title="unlock-eval demo: methods compared")
    return {"root": root, "table": table, "page": page, "file": write_page(root / "report.html", page)}


def test_the_table_is_the_demo_shaped_one(built):
    table = built["table"]
    assert table.columns == ["arith_unlock", "arith_unlock_dev"] and len(table.rows) == 11
    assert table.checked_columns == table.columns  # strict, lenient, Δ, chance and fallback share per task


# --- labels, legend, repetition panel: at the matplotlib level ----------------------------------------------------
def test_every_row_label_is_distinct_and_complete(built):
    table = built["table"]
    labels, shared = row_labels(table)
    assert len(set(labels)) == len(labels) == len(table.rows)
    for label, run in zip(labels, table.rows):
        assert "…" not in label and "..." not in label
        for knob in ("alpha", "k"):  # the settings that tell sweep points apart are in every label that has them
            if run.hyper.get(knob) is not None:
                assert f"{knob}={run.hyper[knob]}" in label, label
    assert "n=64" in shared and "mode=prefill_last" in shared and not any("n=64" in t for t in labels)  # said once
    for plot in (length_plot(table), behaviour_plot(table)):
        fig, ticks = plot
        assert [t.replace("\n", " ") for t in ticks] == labels  # wrapped, never cut
        assert max(len(line) for t in ticks for line in t.split("\n")) <= 40


def test_a_setting_only_some_rows_of_a_method_have_tells_them_apart():
    from unlock_eval.reports.plots import distinct_labels

    items = [
        ("unlock", "unlock a → b", {"alpha": 0.1, "k": 16, "dtype": "float32"}),
        ("unlock", "unlock a → b", {"alpha": 0.1, "k": 16, "protocol": "reference", "dtype": "float32"}),
        ("plain", "plain b", {"dtype": "float32"}),
    ]
    labels, shared = distinct_labels(items)
    assert labels == ["unlock a → b", "unlock a → b protocol=reference", "plain b"]
    assert shared == "unlock rows: alpha=0.1 k=16; every row: dtype=float32"


def test_sweep_legends_sit_outside_the_axes_and_name_each_line(built):
    plots = sweep_plots(built["table"], "alpha") + sweep_plots(built["table"], "k")
    assert {name for _, name, _ in plots} == {"arith_unlock_dev_vs_alpha", "arith_unlock_dev_vs_k"}
    for fig, name, _ in plots:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (ax,) = fig.axes
        legends = fig.legends + ([ax.get_legend()] if ax.get_legend() else [])
        (legend,) = legends
        box = legend.get_window_extent(renderer)
        assert not box.overlaps(ax.get_window_extent(renderer)), name  # not over the data
        assert not box.overlaps(ax.xaxis.get_tightbbox(renderer)), name  # nor over the tick labels or the x label
        texts = [t.get_text() for t in legend.get_texts()]
        assert len(set(texts)) == len(texts) and all("…" not in t for t in texts), texts
    assert "alpha=0.05" in plots[1][0].axes[0].get_title()  # the lines over k say the alpha they were drawn at


def test_the_repetition_panel_shows_every_rows_value(built):
    table = built["table"]
    fig, labels = behaviour_plot(table)
    repetition = fig.axes[2]
    assert "repetition" in repetition.get_title()
    texts = [t.get_text() for t in repetition.texts]
    assert len(texts) == len(labels)  # one value per row, zeros included
    values = [table.behaviour[i].repetition for i in sorted(table.behaviour)]
    assert texts == [f"{v:.3f}" for v in values] and 0.0 in values and max(values) > 0.5
    fig.canvas.draw()
    axes_box = repetition.get_window_extent()
    for text in repetition.texts:  # every label inside its own panel, not over the next one
        box = text.get_window_extent()
        assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 + 1, text.get_text()


def test_the_diagnosis_legends_sit_beside_the_axes():
    from types import SimpleNamespace

    from unlock_eval.reports.plots import diagnosis_figure

    rows = [SimpleNamespace(relative_depth=i / 9, heldout_r2_k=0.7, heldout_r2_full=0.6, cka=0.5, cka_chance=0.1,
                            cos=0.4 - i / 10, cos_low=0.3 - i / 10, cos_high=0.5 - i / 10, key_norm_ratio=0.2)
            for i in range(10)]  # fmt: skip
    d = SimpleNamespace(rows=rows, k=16, n=64, sweep_k={8: rows}, hidden_size=640, source="s", target="t")
    fig = diagnosis_figure(d)
    fig.canvas.draw()  # as `unlock-eval diagnose --plot` saves it: no tight bounding box to rescue a legend
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        box = ax.get_legend().get_window_extent(renderer)
        assert not box.overlaps(ax.get_window_extent(renderer)) and box.x1 <= fig.bbox.x1


def test_report_says_what_it_is_doing(built, tmp_path, caplog):
    from unlock_eval.cli import main

    caplog.set_level(logging.INFO, logger="unlock_eval.reports.progress")
    assert main(["report", str(built["root"] / "results"), "--out", str(tmp_path / "r.html")]) == 0
    said = [r.getMessage() for r in caplog.records if r.name == "unlock_eval.reports.progress"]
    assert said[0] == "report: reading 12 results files and their samples", said
    for step in ("paired Δ", "the tokenizer of", "behaviour of the logged samples", "drawing the figures"):
        assert any(step in line for line in said), (step, said)
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "unlock_eval.reports.progress")


# --- bold and provenance: at the data level ------------------------------------------------------------------------
def test_only_scores_are_bold(built):
    table = built["table"]
    assert not any(cell.best for cell in table.extras.values())  # set-up s, passes, answer found: not results
    assert any(cell.best for cell in table.cells.values())
    extras = built["page"].split('<table class="report extras">')[1].split("</table>")[0]
    assert "<b>" not in extras and "15.3" in extras
    assert "**15.3**" not in render(table, "md") and "**4.5**" not in render(table, "md")


def test_the_page_says_where_its_numbers_come_from(built):
    page = built["page"]
    block = page.split('<section id="provenance">')[1].split("</section>")[0]
    text = " ".join(re.sub(r"<[^>]+>", " ", block).split())
    assert re.search(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC by unlock-eval \d", text)
    for needed in ("lm-eval 0.4.13", "transformers 5.23.0", "torch 2.13.0+cu130", "034b319",
                   "NVIDIA H100 80GB HBM3", "AMD EPYC 9454", "Debian GNU/Linux 12"):  # fmt: skip
        assert needed in text, needed
    assert re.search(r"report machine .*Python 3\.\d+.*lm-eval \S+, transformers \S+, torch \S+", text)
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td><td>([^<]+)</td>",
                      block)  # fmt: skip
    assert ("arith_unlock", "30", "300", "30") in [r[:4] for r in rows]
    assert ("arith_unlock_dev", "30", "40", "30") in [r[:4] for r in rows]
    commands = re.findall(r"<code>(lm_eval [^<]+)</code>", block)
    assert len(commands) == 12  # one per results file
    assert any(c.startswith(f"lm_eval --model hf --model_args pretrained={TARGET},dtype=float32 --tasks "
                            "arith_unlock,arith_cot_unlock --batch_size 32 --device cuda:0 --limit 30 --gen_kwargs "
                            "max_gen_toks=48") for c in commands), commands  # fmt: skip
    assert any("--model unlock --model_args" in c and "alpha=0.2" in c for c in commands)


def test_the_page_is_self_contained(built):
    page = built["page"]
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    assert f'content="{CSP}"' in page
    assert page.count("<svg ") == 4 and "<img" not in page  # figures inline: their text is text
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # four figures on one page, no id shared


# --- a real browser at three widths --------------------------------------------------------------------------------
PROBE = """<script>
window.addEventListener("load", () => {
  const root = document.documentElement;
  const tables = document.querySelector("table.report") ? "table.report" : "table";  // (an older page: any)
  const cells = [...document.querySelectorAll(`${tables} th, ${tables} td`)];
  const lines = el => {
    const range = document.createRange();
    range.selectNodeContents(el);
    return new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top))).size;
  };
  const label = g => [...g.querySelectorAll("text")].map(t => t.textContent).join(" ");
  const figures = {};
  for (const fig of document.querySelectorAll("figure")) {
    const ticks = [...fig.querySelectorAll('g[id*="-ytick_"]')].map(label).filter(t => t);
    const legend = [...fig.querySelectorAll('g[id*="-legend_"] g[id*="-text_"]')].map(label);
    const box = fig.querySelector("svg, img").getBoundingClientRect();
    figures[fig.id] = {ticks, legend, width: box.width, right: box.right};
  }
  const out = {
    inner: window.innerWidth, client: root.clientWidth, scroll: root.scrollWidth,
    cellRight: Math.max(...cells.map(c => c.getBoundingClientRect().right)),
    cellFont: Math.min(...cells.map(c => parseFloat(getComputedStyle(c).fontSize))),
    boxes: [...document.querySelectorAll(".scroll")].map(d => [d.scrollWidth, d.clientWidth]),
    pairLines: [...document.querySelector(tables).tBodies[0].rows].map(tr => lines(tr.cells[1])),
    columns: [...document.querySelectorAll("table.scores thead tr:last-child th")].length,
    figures,
  };
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def measured(built) -> dict:
    """The probe's measures at each width: one chromium start per width, on the one page built for the module."""
    exe = chromium()
    root = built["root"]
    probe = root / "probe.html"
    probe.write_text(
        built["page"].replace(CSP, CSP + "; script-src 'unsafe-inline'").replace("</body>", PROBE + "</body>")
    )
    out = {}
    for width in (1024, 1400, 1920):
        res = run_chromium(exe, root, "--dump-dom", f"--window-size={width},900", probe.as_uri())
        assert res.returncode == 0, res.stderr[-2000:]
        found = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S)
        assert found is not None, res.stdout[-2000:]
        out[width] = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    return out


@pytest.mark.parametrize("width", [1024, 1400, 1920])
def test_the_page_fits_the_window(measured, width):
    m = measured[width]
    assert m["inner"] == width
    assert m["scroll"] <= m["client"], m  # no horizontal scroll of the page
    assert m["cellFont"] >= 11  # readable
    assert m["columns"] == 2 * 5  # strict, lenient, Δ, chance, fallback share under each task heading
    if width >= 1400:  # every column's right edge in view: no table scrolls, nothing hides behind a scrollbar
        assert m["cellRight"] <= m["client"], m
        assert all(scroll <= client for scroll, client in m["boxes"]), m["boxes"]
    for figure in m["figures"].values():
        assert 0 < figure["width"] and figure["right"] <= m["client"]


@pytest.mark.parametrize("width", [1024, 1400, 1920])
def test_source_to_target_takes_at_most_two_lines(measured, width):
    lines = measured[width]["pairLines"]
    assert len(lines) == 11 and max(lines) <= 2, lines


def test_no_two_figure_labels_are_equal_in_the_rendered_page(measured, built):
    figures = measured[1400]["figures"]
    assert set(figures) == {"fig-arith_unlock_dev_vs_alpha", "fig-arith_unlock_dev_vs_k", "fig-generated_length",
                            "fig-behaviour"}  # fmt: skip
    labels, _ = row_labels(built["table"])
    for name in ("fig-generated_length", "fig-behaviour"):
        ticks = figures[name]["ticks"]
        assert ticks == labels and len(set(ticks)) == len(ticks), (name, ticks)
    for name in ("fig-arith_unlock_dev_vs_alpha", "fig-arith_unlock_dev_vs_k"):
        legend = figures[name]["legend"]
        assert len(legend) == 2 and len(set(legend)) == len(legend), (name, legend)
