"""`unlock-eval sweep`: the grid, one extraction and one decomposition per layer, resuming a killed sweep,
`--select-on dev` never touching the reported test documents (checked through the documents each run logged), and
`--select-on train_head` scoring the first rows of train as the reference's grid searches do (checked against the
data files)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

from unlock_eval.cli import main
from unlock_eval.data.benchmarks import load_benchmark
from unlock_eval.data.prompts import load_questions
from unlock_eval.data.splits import select_documents
from unlock_eval.errors import ConfigError
from unlock_eval.experiments.grid import Point, build_grid
from unlock_eval.experiments.selection import write_selection_tasks
from unlock_eval.experiments.sweep import Sweep, parse

from adapter_fixtures import write_questions
from conftest import DATA_DIR, requires_data

# ------------------------------------------------------------------------------------------------ fast: grid, splits


def sweep_main(argv):
    return main(["sweep", *argv])


def test_grid_order_reuses_extraction_and_decomposition(tmp_path):
    base = f"source=a,target=b,extract_from={write_questions(tmp_path / 'q.jsonl')}"
    grid = build_grid(base, "0.5,0.1", "2,8", "8,4")
    # n ascending (one extraction each), largest k first (its decomposition serves smaller k), alpha innermost
    assert grid.points[:4] == [Point(0.1, 2, 4), Point(0.5, 2, 4), Point(0.1, 8, 8), Point(0.5, 8, 8)]
    assert len(grid.points) == 6 and grid.largest_n == 8  # k=8 > n=4 is left out, and said
    assert [s.split(" (")[0] for s in grid.skipped] == ["alpha=0.1 k=8 n=4", "alpha=0.5 k=8 n=4"]
    assert grid.model_args(grid.points[0]) == f"{base},alpha=0.1,k=2,n=4"
    assert build_grid(base + ",k=4", "0.1", None, None).model_args(Point(0.1, 4, 64)) == f"{base},k=4,alpha=0.1"


def test_point_model_args_are_exact_and_name_the_shared_alphas(tmp_path):
    base = f"source=a,target=b,extract_from={write_questions(tmp_path / 'q.jsonl')}"
    grid = build_grid(base, "0.1,0.123456789,2", None, None)
    assert [p.alpha for p in grid.points] == [0.1, 0.123456789, 2.0]  # typed values, as a reused model gets them
    assert grid.model_args(grid.points[1], [0.1, 2.0]) == f"{base},alpha=0.123456789,share_alphas=0.1;2"


@pytest.mark.parametrize(
    "model_args, axes, message",
    [
        ("source=a,target=b,alpha=0.1", ("0.2", None, None), "alpha is swept by --alphas: drop alpha="),
        ("source=a,target=b", (None, None, None), "nothing to sweep"),
        ("source=a,target=b,n=8", (None, "16,32", None), "no valid grid point: alpha=0.1 k=32 n=8 (k=32 exceeds"),
        ("source=a,target=b,layers=x", ("0.1", None, None), "grid point alpha=0.1 k=16 n=64: layers='x'"),
        ("source=a,target=b", ("0.1,nan", None, None), "--alphas='nan': expected a finite number"),
        ("source=a,target=b,alpah=1", ("0.1", None, None), "unknown model_args for --model unlock: alpah"),
    ],
)
def test_grid_errors_name_the_argument(model_args, axes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_grid(model_args, *axes)


def _rows(n):
    return [{"question": f"q{i}", "answer": str(i)} for i in range(n)]


def test_dev_slice_is_seeded_disjoint_and_leaves_test_alone(tmp_path):
    data = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(_rows(30)), "test": datasets.Dataset.from_list(_rows(12))}
    )
    extraction = tmp_path / "ex.jsonl"
    extraction.write_text("".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(20)))
    dev = select_documents(data, "dev", "train", 5, 7, str(extraction), 8)  # the last 8 rows: q12..q19 excluded
    picked = [row["question"] for row in dev["dev"]]
    assert len(picked) == 5 and not {f"q{i}" for i in range(12, 20)} & set(picked)
    assert picked == [
        row["question"] for row in select_documents(data, "dev", "train", 5, 7, str(extraction), 8)["dev"]
    ]
    assert picked != select_documents(data, "dev", "train", 5, 8, str(extraction), 8)["dev"]["question"]  # seeded
    # 30 rows, 20 extraction prompts (q0..q19 = the last 20 of the file): only q20..q29 are eligible
    squeezed = select_documents(data, "dev", "train", 15, 7, str(extraction), 20)["dev"]["question"]
    assert sorted(squeezed) == sorted(f"q{i}" for i in range(20, 30))
    assert dev["test"]["question"] == data["test"]["question"]
    from_test = select_documents(data, "dev", "test", 4, 7)["dev"]["question"]
    heldout = select_documents(data, "heldout", "test", 4, 7)["test"]["question"]
    assert len(from_test) == 4 and len(heldout) == 8
    assert sorted(list(from_test) + list(heldout)) == sorted(data["test"]["question"])
    with pytest.raises(ConfigError, match="heldout applies to a dev slice taken from test"):
        select_documents(data, "heldout", "train", 4, 7)


def test_head_is_the_first_rows_in_order_and_refuses_what_does_not_fit(tmp_path):
    data = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(_rows(30)), "test": datasets.Dataset.from_list(_rows(12))}
    )
    extraction = tmp_path / "ex.jsonl"  # the train split itself: its last n rows are the extraction prompts
    extraction.write_text("".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(30)))
    head = select_documents(data, "head", "train", 5, extract_from=str(extraction), n=8)  # no seed: nothing drawn
    assert head["head"]["question"] == ["q0", "q1", "q2", "q3", "q4"]  # the first rows, in file order
    assert head["test"]["question"] == data["test"]["question"] and "dev" not in head
    assert select_documents(data, "head", "train", 10, None, str(extraction), 20)["head"]["question"][-1] == "q9"
    # 10 + 21 > 30 rows: the head and the last 21 prompts share q9; refused, naming the numbers, never trimmed
    with pytest.raises(ConfigError, match=r"1 of the first 10 rows of the train split \(30 rows; the first shared is "
                       r"row 9\) are among the n=21 extraction prompts"):  # fmt: skip
        select_documents(data, "head", "train", 10, None, str(extraction), 21)
    with pytest.raises(ConfigError, match="the first 13 rows of the test split were asked for, but it has only 12"):
        select_documents(data, "head", "test", 13)
    assert select_documents(data, "head", "test", 12)["head"]["question"] == data["test"]["question"]


def test_agieval_rows_are_matched_by_the_question_inside_their_query(tmp_path):
    from unlock_eval.data.splits import head_indices

    rows = [{"query": f"Q: problem {i}\nA: The answer is", "answer": str(i)} for i in range(6)]
    assert head_indices(rows, 3, {"problem 4", "problem 5"}) == [0, 1, 2]
    with pytest.raises(ConfigError, match=r"1 of the first 3 rows .* first shared is row 2"):
        head_indices(rows, 3, {"problem 2"})  # what extract_from=agieval_math_test extracts from


def _file_rows(path: str) -> list[dict]:
    return [json.loads(line) for line in (DATA_DIR / path).read_text().splitlines() if line.strip()]


@requires_data
def test_train_head_twins_load_the_first_train_rows_of_the_data_files(tmp_path, lm_eval_index):
    """What lm-eval loads for each `<task>_head` twin: the first 200 rows of the task's train split in file order;
    for a data set without train (MATH-500, AGIEval) the first 200 of its test file, as the reference's loader falls
    back to test.jsonl, and that choice is marked optimistic."""
    from lm_eval.tasks import TaskManager

    tasks = ["gsm8k_unlock", "math_unlock_algebra", "math500_unlock", "agieval_math_unlock"]
    index = TaskManager().task_index
    twins = write_selection_tasks(tasks, tmp_path / "tasks", 200, None, "gsm8k", 64, index, "train_head")
    assert twins.dev == [f"{t}_head" for t in tasks] and twins.report == tasks  # reported: the tasks, in full
    assert twins.optimistic == ["math500_unlock", "agieval_math_unlock"]
    assert "first 200 rows of GSM8K train in file order" in twins.descriptions[0]
    assert "first 200 rows of MATH-500 test" in twins.descriptions[2] and "optimistic" in twins.descriptions[2]
    loaded = TaskManager(include_path=str(twins.folder)).load(twins.dev)["tasks"]
    docs = {name: list(task.eval_docs) for name, task in loaded.items()}  # what lm-eval scores
    gsm8k = [d["question"] for d in docs["gsm8k_unlock_head"]]
    assert gsm8k == [r["question"] for r in _file_rows("gsm8k/train.jsonl")[:200]]
    assert not set(gsm8k) & set(load_questions("gsm8k", 64))  # nor an extraction prompt
    algebra = [r["problem"] for r in _file_rows("math/train.jsonl") if r["unique_id"].split("/")[1] == "algebra"]
    assert [d["problem"] for d in docs["math_unlock_algebra_head"]] == algebra[:200]
    assert [d["problem"] for d in docs["math500_unlock_head"]] == [
        r["problem"] for r in _file_rows("math/math500.jsonl")[:200]
    ]
    assert [d["question"] for d in docs["agieval_math_unlock_head"]] == [
        r["question"] for r in _file_rows("agieval/math.jsonl")[:200]
    ]
    # a head that would share rows with the extraction prompts (7473 GSM8K train rows < 200 + 7300) is refused
    # before anything runs, and no twin is written for it
    with pytest.raises(ConfigError, match=r"gsm8k_unlock: 27 of the first 200 rows of the train split \(7473 rows"):
        write_selection_tasks(["gsm8k_unlock"], tmp_path / "refused", 200, None, "gsm8k", 7300, index, "train_head")
    assert not list((tmp_path / "refused").glob("*.yaml"))


# ------------------------------------------------------------------------------------------------ sweeps on tiny models


@pytest.fixture
def tiny(tiny_world, lm_eval_index):
    """The session's tiny models (conftest.tiny_world) and its built-in task index (the sweeps run in this process)."""
    return tiny_world


def sweep_argv(tiny, out, cache, *extra):
    model_args = f"source={tiny['src']},target={tiny['tgt']},extract_from={tiny['questions']},cache_dir={cache},n=8"
    return ["--model_args", model_args, "--alphas", "0.1,0.5", "--ks", "2,4", "--tasks", "gsm8k_unlock", "--limit", "3",
            "--gen_kwargs", "max_gen_toks=6", "--device", "cpu", "--output_path", str(out), *extra]  # fmt: skip


def records(out: Path) -> dict[str, dict]:
    found = {}
    for file in (out / "points").rglob("results_*.json"):
        found[file.relative_to(out / "points").parts[0]] = json.loads(file.read_text())["config"]["unlock_eval"]
    return found


def test_the_same_sweep_resumes_whatever_the_order_of_its_flags_and_model_args(tiny, tmp_path):
    """A sweep's identity is what lm-eval reads: model_args in another order, lm-eval flags in another order, as a
    short alias or merged (--gen_kwargs given twice) are the same sweep; a real difference is refused with both
    values."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = Sweep(*parse(sweep_argv(tiny, out, cache, "--batch_size", "2", "--gen_kwargs", "temperature=0")))
    first.manifest.start()
    first.manifest.record("baseline", results="baseline/results.json", scores={})  # a finished run: a sweep to resume
    reordered = ",".join(reversed(sweep_argv(tiny, out, cache)[1].split(",")))

    def again(model_args=reordered, *extra):
        return Sweep(*parse(["-b", "2", "--device=cpu", "--gen_kwargs", "temperature=0,max_gen_toks=6", *extra,
                             "--model_args", model_args, "--tasks", "gsm8k_unlock", "--ks", "2,4", "--alphas",
                             "0.1,0.5", "--limit", "3", "--output_path", str(out)]))  # fmt: skip

    again()  # the same sweep: no refusal
    with pytest.raises(ConfigError) as refused:
        again(reordered, "--seed", "7")
    assert "(lm-eval flag --seed: not given there, [7, 7, 7, 7] now)" in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        again(reordered.replace("n=8", "n=4"))
    assert "(model_args n: 8 there, 4 now)" in str(refused.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--alpha", "0.3"], "--alpha: not a flag of unlock-eval sweep nor of lm-eval run (did you mean --alphas?)"),
        (["--n", "8"], "--n: not a flag of unlock-eval sweep nor of lm-eval run (did you mean --ns?)"),
        (["-L", "5"], "--limit: give it once, as a sweep flag"),
        (["--tasks", "gsm8k_unlock,no_such_task"], "--tasks: unknown task(s) no_such_task"),
    ],
)
def test_a_refused_sweep_writes_no_record_so_the_corrected_command_runs(tiny, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert sweep_main([*sweep_argv(tiny, out, tmp_path / "cache"), *extra]) == 2
    err = capsys.readouterr().err  # (the unknown task: after the sweep's first line, what it is about to run)
    assert err.splitlines()[-1].startswith(f"unlock-eval sweep: error: {message}") and "Traceback" not in err, err
    assert not (out / "sweep.json").exists()


def test_a_broken_sweep_record_is_one_line_naming_it(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text('{"version": 1, "settings": {"tasks": ["gsm8k_un')  # killed mid-write by hand
    assert sweep_main(sweep_argv(tiny, out, tmp_path / "cache")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"unlock-eval sweep: error: {out / 'sweep.json'}: not a readable sweep record")
    assert "move it away" in err and "another --output_path" in err and err.count("\n") == 1, err[-2000:]
    (out / "sweep.json").unlink()
    (out / "file").write_text("not a folder")
    assert sweep_main(sweep_argv(tiny, out / "file" / "sweep", tmp_path / "cache")) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"unlock-eval sweep: error: --output_path {out / 'file' / 'sweep'}: {out / 'file'} is a file, not a folder\n"
    )


@pytest.mark.slow
@pytest.mark.process
@requires_data
def test_killed_sweep_resumes_with_one_extraction_and_one_decomposition_per_layer(tiny, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "unlock_eval.cli", "sweep", *sweep_argv(tiny, out, cache)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    manifest = out / "sweep.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # kill it once the baseline and one point are done
        if manifest.is_file() and len(json.loads(manifest.read_text())["runs"]) >= 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert proc.wait(timeout=60) == -signal.SIGKILL, proc.stderr.read()[-3000:]
    before = json.loads(manifest.read_text())["runs"]
    assert "points/n8_k4_alpha0.1" in before and len(before) < 5
    first = {run_id: (out / run["results"]).stat().st_mtime_ns for run_id, run in before.items()}

    assert sweep_main(sweep_argv(tiny, out, cache)) == 0
    after = json.loads(manifest.read_text())["runs"]
    assert len(after) == 5  # baseline + 4 points
    for run_id, mtime in first.items():  # finished before the kill: not run again
        assert after[run_id]["results"] == before[run_id]["results"]
        assert (out / after[run_id]["results"]).stat().st_mtime_ns == mtime
    assert len(list((out / "points").rglob("results_*.json"))) == 4  # the interrupted point left nothing behind

    recs = records(out)
    assert sorted(recs) == ["n8_k2_alpha0.1", "n8_k2_alpha0.5", "n8_k4_alpha0.1", "n8_k4_alpha0.5"]
    passes = {name: r["details"]["extraction_forward_passes"] for name, r in recs.items()}
    decompositions = {name: r["details"]["subspace_decompositions"] for name, r in recs.items()}
    # one extraction: the first point (largest k) captured the states, every other point read them
    assert passes["n8_k4_alpha0.1"] > 0 and sum(passes.values()) == passes["n8_k4_alpha0.1"]
    # one decomposition per layer: the target's 3 layers and the 3 source layers the map uses, all at k=4
    assert decompositions == {"n8_k4_alpha0.1": 6, "n8_k4_alpha0.5": 0, "n8_k2_alpha0.1": 0, "n8_k2_alpha0.5": 0}
    assert {(r["hyperparameters"]["alpha"], r["hyperparameters"]["k"]) for r in recs.values()} == {
        (0.1, 2), (0.5, 2), (0.1, 4), (0.5, 4)
    }  # fmt: skip

    report = (out / "report.md").read_text()
    assert report.count("| unlock ") == 4 and "| plain " in report and "chosen on the test set" in report
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")

    assert sweep_main(sweep_argv(tiny, out, cache)) == 0  # everything done: nothing reruns
    assert json.loads(manifest.read_text())["runs"] == after
    assert sweep_main([*sweep_argv(tiny, out, cache), "--no-baseline"]) == 2  # other settings: refused, not mixed


@pytest.mark.slow
@requires_data
def test_select_on_dev_never_reads_reported_documents(tiny, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = sweep_argv(tiny, out, cache, "--select-on", "dev", "--dev-size", "4", "--no-baseline")
    argv[argv.index("--tasks") + 1] = "gsm8k_unlock,math500_unlock"
    argv[argv.index("--model_args") + 1] = f"source={tiny['src']},target={tiny['tgt']},cache_dir={cache},n=16"
    argv[argv.index("--ks") + 1] = "4"
    assert sweep_main(argv) == 0

    def logged(folder: Path, task: str) -> set[str]:
        docs = set()
        for file in folder.rglob(f"samples_{task}_2*.jsonl"):
            docs |= {json.loads(line)["doc"]["question"] for line in file.read_text().splitlines()}
        return docs

    dev_gsm8k, dev_math = logged(out / "dev", "gsm8k_unlock_dev"), logged(out / "dev", "math500_unlock_dev")
    test_gsm8k, test_math = logged(out / "points", "gsm8k_unlock"), logged(out / "points", "math500_unlock_heldout")
    assert len(dev_gsm8k) == len(dev_math) == len(test_gsm8k) == len(test_math) == 3
    assert not dev_gsm8k & test_gsm8k and not dev_math & test_math
    assert not dev_gsm8k & set(load_questions("gsm8k", 16))  # nor the extraction prompts
    assert not dev_gsm8k & set(load_benchmark("gsm8k")["test"]["question"])  # drawn from train
    heldout = select_documents(load_benchmark("math500"), "heldout", "test", 4, 1234)["test"]
    assert len(heldout) == 496 and not set(heldout["problem"]) & dev_math  # the split the report scores

    manifest = json.loads((out / "sweep.json").read_text())
    dev_points = [r for r in manifest["runs"] if r.startswith("dev/points/")]
    test_points = [r for r in manifest["runs"] if r.startswith("points/")]
    assert len(dev_points) == 2 and len(test_points) == 1  # only the chosen point is evaluated on test
    assert test_points == [f"points/{manifest['chosen']['name']}"] and manifest["chosen"]["split"] == "dev"
    report = (out / "report.md").read_text()
    assert "(chosen on dev)" in report and "was chosen on dev" in report and "math500_unlock_heldout" in report
    assert "(chosen on dev)" in (out / "dev" / "report.md").read_text()


@pytest.mark.slow
@requires_data
def test_select_on_train_head_scores_the_first_train_rows_and_records_the_choice(tiny, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = sweep_argv(tiny, out, cache, "--select-on", "train_head", "--no-baseline")  # --dev-size: 200 by default
    argv[argv.index("--tasks") + 1] = "gsm8k_unlock,math500_unlock"
    argv[argv.index("--model_args") + 1] = f"source={tiny['src']},target={tiny['tgt']},cache_dir={cache},n=16"
    argv[argv.index("--ks") + 1] = "4"
    assert sweep_main([*argv, "--dev-seed", "1"]) == 2  # nothing is drawn: a seed is refused
    assert sweep_main(argv) == 0

    def logged(folder: Path, task: str) -> list[str]:
        docs = {}
        for file in folder.rglob(f"samples_{task}_2*.jsonl"):
            docs |= {(s := json.loads(line))["doc_id"]: s["doc"]["question"] for line in file.read_text().splitlines()}
        return [docs[i] for i in sorted(docs)]

    gsm8k_train = [r["question"] for r in _file_rows("gsm8k/train.jsonl")]
    assert logged(out / "train_head", "gsm8k_unlock_head") == gsm8k_train[:3]  # --limit 3 of the head
    assert logged(out / "points", "gsm8k_unlock") == load_benchmark("gsm8k")["test"]["question"][:3]
    math500 = [r["problem"] for r in _file_rows("math/math500.jsonl")]
    assert logged(out / "train_head", "math500_unlock_head") == math500[:3]  # no train split: test's head
    assert logged(out / "points", "math500_unlock") == math500[:3]  # reported on test in full (here: --limit)

    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["settings"]["select_on"] == "train_head" and manifest["settings"]["dev_size"] == 200
    assert "dev_seed" not in manifest["settings"] and manifest["settings"]["dev_excludes_n"] == 16
    chosen = manifest["chosen"]
    assert chosen["split"] == "train_head" and chosen["optimistic"] == ["math500_unlock"]
    assert "the first 200 rows of GSM8K train" in chosen["dev_tasks"][0]
    assert sorted(r for r in manifest["runs"] if r.startswith("train_head/points/")) == [
        "train_head/points/n16_k4_alpha0.1", "train_head/points/n16_k4_alpha0.5"
    ]  # fmt: skip
    assert [r for r in manifest["runs"] if r.startswith("points/")] == [f"points/{chosen['name']}"]
    report = (out / "report.md").read_text()
    assert "(chosen on train head: optimistic)" in report and "was chosen on the train head" in report
    assert "math500_unlock: no train split" in report and "optimistic" in report
    assert "(chosen on train head: optimistic)" in (out / "train_head" / "report.md").read_text()


def answers(out: Path) -> dict[str, list[str]]:
    """Each point's logged answers (by document), from its samples file."""
    found = {}
    for file in sorted((out / "points").rglob("samples_*.jsonl")):
        lines = [json.loads(line) for line in file.read_text().splitlines()]
        found[file.relative_to(out / "points").parts[0]] = [
            s["resps"][0][0] for s in sorted(lines, key=lambda s: s["doc_id"])
        ]
    return found


@pytest.mark.slow
@requires_data
def test_alpha_points_share_one_generation_with_the_answers_of_separate_runs(tiny, tmp_path, monkeypatch):
    from unlock_eval.model_adapters.unlock import UnlockLM

    calls = []
    original = UnlockLM._model_generate

    def counting(self, context, *args, **kwargs):
        out = original(self, context, *args, **kwargs)
        calls.append((self.unlock_config.alpha, context.shape[0], out.shape[0]))
        return out

    monkeypatch.setattr(UnlockLM, "_model_generate", counting)
    cache = tmp_path / "cache"

    def sweep(name, *extra):
        argv = sweep_argv(tiny, tmp_path / name, cache, "--no-baseline", *extra)
        argv[argv.index("--alphas") + 1], argv[argv.index("--ks") + 1] = "0,0.5,2", "4"
        calls.clear()
        assert sweep_main(argv) == 0
        return list(calls), answers(tmp_path / name)

    shared_calls, shared = sweep("shared")
    separate_calls, separate = sweep("separate", "--separate-alphas")
    # shared: only the first point generates, one batch of 3 copies per document (batch size 1, 3 documents)
    assert shared_calls == [(0.0, 1, 1)] * 3 and len(separate_calls) == 9
    assert shared == separate and len(shared) == 3
    assert len({tuple(a) for a in shared.values()}) > 1  # the alphas do change the answers
    recs = records(tmp_path / "shared")
    assert sorted(r["hyperparameters"]["alpha"] for r in recs.values()) == [0.0, 0.5, 2.0]
    assert len({r["details"]["steering_fingerprint"] for r in recs.values()}) == 3
    assert recs["n8_k4_alpha0"]["hyperparameters"]["share_alphas"] == [0.0, 0.5, 2.0]
    assert recs["n8_k4_alpha0.5"]["hyperparameters"]["share_alphas"] is None
    # the later alpha points reuse the loaded model (UnlockLM.reconfigure): nothing extracted or loaded again
    assert [recs[f"n8_k4_alpha{a}"]["details"].get("model_reused") for a in ("0", "0.5", "2")] == [None, True, True]
    assert all(recs[f"n8_k4_alpha{a}"]["setup_seconds"] < 1 for a in ("0.5", "2"))


@pytest.mark.slow
@pytest.mark.xdist_group("vllm")
def test_a_sweep_runs_on_the_vllm_backend_with_its_plain_baseline(embedded_pair, tmp_path, monkeypatch, lm_eval_index):
    """backend=vllm: the alphas share one engine pass, the baseline is lm-eval's vllm model on the same target."""
    pytest.importorskip("vllm", exc_type=ImportError)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    out = tmp_path / "sweep"
    args = "backend=vllm,source=smollm2-135m-instruct,target=gemma3-270m,dtype=float32,max_model_len=512"
    argv = ["--model_args", args, "--tasks", "arith_unlock", "--alphas", "0.1,0.5", "--limit", "2"]
    assert sweep_main([*argv, "--output_path", str(out), "--gen_kwargs", "max_gen_toks=8", "--batch_size", "auto"]) == 0
    log = json.loads((out / "sweep.json").read_text())
    assert sorted(log["runs"]) == ["baseline", "points/n64_k16_alpha0.1", "points/n64_k16_alpha0.5"]
    report = (out / "report.md").read_text()
    assert "| plain " in report and report.count("| unlock ") == 2
