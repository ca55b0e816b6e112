"""`unlock-eval report` on real lm-eval output folders (tiny models, --log_samples): rows, columns, values, stderr,
paired Δ and its interval recomputed here from the samples files, in every format; a planted difference is
significant and a zero difference is not."""

import csv
import io
import json
import math
import re
import shutil
import statistics
from pathlib import Path

import pytest

from unlock_eval.reports import report
from unlock_eval.reports.formats import render
from unlock_eval.reports.html import CSP
from unlock_eval.reports.stats import format_delta, paired_delta

from adapter_fixtures import QUESTIONS, save_tiny, write_questions
from test_html import SIZES_SCRIPT, chromium, run_chromium

pytestmark = pytest.mark.slow  # four lm-eval runs on tiny models, in this process
DOCS = [f"{q} {i}" for i in range(4) for q in QUESTIONS][:24]
PLANTED = set(range(0, 24, 3))  # the plain target is made right on exactly these documents

TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{prompt}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 3
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
{extra}"""


def lm_eval(*args):
    """`lm_eval ARGS --device cpu --log_samples` in this process (the session's built-in task index)."""
    from unlock_eval.model_adapters.inprocess import run_lm_eval

    run_lm_eval([*map(str, args), "--device", "cpu", "--log_samples"])


def write_task(folder: Path, name: str, answers: list[str], prompt: str, extra: str = "") -> None:
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in zip(DOCS, answers)))
    (folder / f"{name}.yaml").write_text(TASK.format(name=name, data=data, prompt=prompt, extra=extra))


def samples(folder: Path, task: str) -> dict[int, dict]:
    own = re.compile(rf"samples_{task}_\d{{4}}-.*")  # not samples_{task}_cot_...
    file = next(f for f in folder.rglob(f"samples_{task}_*.jsonl") if own.fullmatch(f.name))
    return {json.loads(line)["doc_id"]: json.loads(line) for line in file.read_text().splitlines()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, lm_eval_index):
    root = tmp_path_factory.mktemp("report")
    model = save_tiny(root / "model", "llama", 2, 32, 7)
    tasks, out = root / "tasks", root / "out"
    tasks.mkdir()
    prompt = "Question: {{question}}\\nAnswer:"
    write_task(tasks, "tiny_probe", ["?"] * len(DOCS), prompt)
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    probe = simple_evaluate(model="hf", model_args=f"pretrained={model}", tasks=["tiny_probe"], device="cpu",
                            task_manager=TaskManager(include_path=str(tasks)), log_samples=True)  # fmt: skip
    said = {s["doc_id"]: s for s in probe["samples"]["tiny_probe"]}
    # plant: the gold answer is what the model says on PLANTED, something it never says elsewhere
    answers = [said[i]["filtered_resps"][0] if i in PLANTED else "@@" for i in range(len(DOCS))]
    write_task(tasks, "tiny_plant", answers, prompt)
    twin = "  unlock_prompt:\n    capability: cot_qa\n    template: unlocked\n    prompted_of: tiny_plant\n"
    write_task(tasks, "tiny_plant_cot", answers, prompt + " Let's think step by step.\\n", twin)
    common = ["--include_path", str(tasks), "--output_path", str(out)]
    lm_eval("--model", "hf", "--model_args", f"pretrained={model}", "--tasks", "tiny_plant,tiny_plant_cot", *common)
    questions = write_questions(root / "questions.jsonl")
    for alpha in (0.0, 40.0):  # alpha 0: steering changes nothing; alpha 40: the answers move
        args = f"target={model},alpha={alpha},k=4,n=8,extract_from={questions},cache_dir={root / 'cache'}"
        lm_eval("--model", "unlock", "--model_args", args, "--tasks", "tiny_plant", *common)
    return {"root": root, "out": out, "model": model}


def rows_by(table, method, alpha=None):
    found = [i for i, run in enumerate(table.rows) if run.method == method and run.hyper.get("alpha") == alpha]
    assert len(found) == 1, [run.label for run in table.rows]
    return found[0]


def scores(folder: Path, task: str, run_dir: str) -> dict[int, float]:
    return {i: float(s["exact_match"]) for i, s in samples(folder / run_dir, task).items()}


def test_rows_columns_values_stderr_and_paired_deltas(world):
    out = world["out"]
    table = report([out])
    assert table.columns == ["tiny_plant"]  # the prompted twin sits under its locked task, by metadata
    assert sorted(run.method for run in table.rows) == ["native_steering", "native_steering", "plain", "prompted"]
    plain = rows_by(table, "plain")
    hf_dir = next(p.name for p in out.iterdir() if "model" in p.name and not p.name.startswith("unlock"))
    plain_scores = scores(out, "tiny_plant", hf_dir)
    assert {i for i, v in plain_scores.items() if v == 1.0} == PLANTED  # the plant worked
    cell = table.cells[(plain, "tiny_plant")]
    n = len(plain_scores)
    assert cell.value == pytest.approx(len(PLANTED) / n)
    assert cell.stderr == pytest.approx(statistics.stdev(plain_scores.values()) / math.sqrt(n))
    prompted = rows_by(table, "prompted")
    twin_scores = scores(out, "tiny_plant_cot", hf_dir)
    assert table.cells[(prompted, "tiny_plant")].value == pytest.approx(statistics.mean(twin_scores.values()))
    steered_dir = "unlock_native_model"
    for alpha, significant in ((40.0, True), (0.0, False)):
        i = rows_by(table, "native_steering", alpha)
        assert table.baseline[i] == plain
        files = sorted((out / steered_dir).glob("results_*.json"))
        run_file = next(f for f in files if json.loads(f.read_text())["config"]["unlock_eval"]["hyperparameters"]
                        ["alpha"] == alpha)  # fmt: skip
        stamp = run_file.stem.removeprefix("results_")
        steered = {
            json.loads(line)["doc_id"]: float(json.loads(line)["exact_match"])
            for line in (out / steered_dir / f"samples_tiny_plant_{stamp}.jsonl").read_text().splitlines()
        }
        expected = paired_delta([steered[k] for k in sorted(steered)], [plain_scores[k] for k in sorted(steered)])
        got = table.cells[(i, "tiny_plant")].delta
        assert got.paired and (got.delta, got.low, got.high, got.p_value) == pytest.approx(
            (expected.delta, expected.low, expected.high, expected.p_value)
        )
        assert got.significant is significant, (alpha, got)
    zero = table.cells[(rows_by(table, "native_steering", 0.0), "tiny_plant")].delta
    assert zero.delta == 0 and zero.low == zero.high == 0


def test_behaviour_columns_and_command_read_the_logged_samples(world, capsys):
    from unlock_eval.cli import main
    from unlock_eval.reports.behaviour import behaviour

    table = report([world["out"]])
    for i, run in enumerate(table.rows):
        expected = behaviour(list(run.tasks["tiny_plant"].samples.values()))  # texts and their documents' questions
        assert table.extras[(i, "steps")].value == expected.step_structured
        assert table.extras[(i, "degenerate")].value == expected.degenerate
        assert table.extras[(i, "first_word_entropy")].value == pytest.approx(expected.first_word_entropy)
    assert main(["behaviour", str(world["out"])]) == 0
    out = capsys.readouterr().out
    assert out.count("tiny_plant") == 4 and "first-word entropy (bits)" in out and "top first words" in out
    assert "degenerate" in out
    assert main(["behaviour", str(world["out"] / "missing")]) == 2


def test_every_format_carries_the_same_numbers(world):
    table = report([world["out"]])
    md = render(table, "md")
    assert "| method" in md and "native_steering" in md and "prompted" in md and "Δ tiny_plant" in md
    assert "* = the interval excludes 0" in md.replace("\n", " ")
    planted = table.cells[(rows_by(table, "native_steering", 40.0), "tiny_plant")].delta
    assert f"{planted.delta:+.3f}" in md and "*" in md
    records = list(csv.DictReader(io.StringIO(render(table, "csv"))))
    assert len(records) == 4
    for i, record in enumerate(records):
        assert float(record["tiny_plant"]) == pytest.approx(table.cells[(i, "tiny_plant")].value)
    latex = render(table, "latex")
    assert "tiny\\_plant" in latex and "\\begin{tabular}" in latex
    page = render(table, "html", [])
    for text in (md, latex, page):  # the same Δ cell, with its significance mark, in every format
        assert format_delta(planted) in text and format_delta(planted).endswith("*")
    assert "<table" in page and "native_steering" in page and "http://" not in page and "https://" not in page


def test_a_key_extracted_from_scored_test_documents_is_flagged(world, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(world["out"], out)
    steered = [p for p in out.rglob("results_*.json") if json.loads(p.read_text())["config"].get("unlock_eval")]
    results = json.loads(steered[0].read_text())  # what extract_from=agieval_math_test records, aimed at this task
    results["config"]["unlock_eval"]["details"]["extraction_overlap"] = {
        "extract_from": "tiny_plant_test", "tasks": r"tiny_plant(_|$)",
        "note": "the key was extracted from the last n=8 test documents of tiny_plant, which its tasks score",
    }  # fmt: skip
    steered[0].write_text(json.dumps(results))
    table = report([out])
    flagged = [i for i, mark in table.marks.items() if mark == "key saw test documents"]
    assert len(flagged) == 1 and table.rows[flagged[0]].tasks.keys() == {"tiny_plant"}
    md = render(table, "md")
    assert "(key saw test documents)" in md and "not a held-out score (extract_from=tiny_plant_test" in md
    assert len(report([world["out"]]).marks) == 0  # no record carries an overlap: nothing flagged


def test_runs_at_another_dtype_are_rows_of_their_own_with_their_own_baseline(world, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(world["out"], out)
    tasks = world["root"] / "tasks"
    lm_eval("--model", "hf", "--model_args", f"pretrained={world['model']},dtype=bfloat16", "--tasks", "tiny_plant",
            "--include_path", tasks, "--output_path", out / "bf16")  # fmt: skip
    table = report([out])
    plain = {table.rows[i].hyper.get("dtype"): i for i, run in enumerate(table.rows) if run.method == "plain"}
    assert set(plain) == {"float32", "bfloat16"}  # `auto` read from the checkpoint's config: float32
    steered = [i for i, run in enumerate(table.rows) if run.method == "native_steering"]
    assert steered and all(table.baseline[i] == plain["float32"] for i in steered)  # the same precision
    assert "| dtype" in render(table, "md")
    assert "| dtype" not in render(report([world["out"]]), "md")  # one precision: no column


def test_cli_writes_html_with_plots_and_merges_reruns(world, tmp_path, capsys, caplog):
    from unlock_eval.cli import main

    out = tmp_path / "results"
    shutil.copytree(world["out"], out)
    hf_dir = next(p for p in out.iterdir() if not p.name.startswith("unlock"))
    original = next(hf_dir.glob("results_*.json"))
    rerun = json.loads(original.read_text())
    rerun["date"] = rerun["date"] + 60
    rerun["results"]["tiny_plant"]["exact_match,none"] = 0.5  # a later run of the same configuration
    (hf_dir / "results_2099-01-01T00-00-00.000000.json").write_text(json.dumps(rerun))
    (hf_dir / "results_broken.json").write_text("{not json")
    page = tmp_path / "report.html"
    assert main(["report", str(out), "--out", str(page), "--plots", str(tmp_path / "p")]) == 0  # `unlock-eval report`
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 1 and "results_broken.json" in skipped[0]  # one warning, named
    text = page.read_text()
    assert text.count("<svg ") >= 1 and "data:image/svg+xml;base64," in text  # figures inline, SVG downloads
    assert "ran more than once; the latest" in text and "0.500" in text
    assert (tmp_path / "p" / "generated_length.png").stat().st_size > 1000
    assert (tmp_path / "p" / "behaviour.png").stat().st_size > 1000 and "step-structured" in text
    assert (tmp_path / "p" / "tiny_plant_vs_alpha.png").stat().st_size > 1000  # the two native runs: one line
    assert (tmp_path / "p" / "generated_length.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    capsys.readouterr()  # a folder with no results: one line, status 2
    assert main(["report", str(tmp_path / "p")]) == 2
    stderr = capsys.readouterr().err
    assert stderr.strip() == f"unlock-eval report: error: no lm-eval results_*.json under {tmp_path / 'p'}"
    # the page itself, in a real headless browser: the table's rows render, every image has a natural size
    exe = chromium()
    probe = tmp_path / "probe.html"
    probe.write_text(
        text.replace(CSP, CSP + "; script-src 'unsafe-inline'").replace("</body>", SIZES_SCRIPT + "</body>")
    )
    dom = run_chromium(exe, tmp_path, "--dump-dom", probe.as_uri()).stdout
    scores = dom.split('<table class="report scores">')[1].split("</table>")[0]
    assert len(re.findall(r"<tr>", scores)) == 2 + 4 and "native_steering" in dom  # two header rows, four runs
    sizes = re.search(r'<pre id="sizes">(.*?)</pre>', dom, re.S).group(1).split()
    assert len(sizes) == text.count("<svg ") and all(min(map(int, s.split("x"))) > 0 for s in sizes)
    shot = tmp_path / "report.png"
    run_chromium(exe, tmp_path, f"--screenshot={shot}", "--window-size=1400,1800", page.as_uri())
    assert shot.stat().st_size > 10_000
