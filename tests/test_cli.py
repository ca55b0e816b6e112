"""`unlock-eval`'s output paths and lm-eval's own refusals: a bad path is one line naming the flag, said before any
work; a format that contradicts --out's suffix is refused; `unlock-eval run` says lm-eval's checks of its flags in
one line too. The outputs themselves are written atomically."""

import json
import os
from pathlib import Path

import pytest

from unlock_eval.cli import main
from unlock_eval.outputs import output_file, output_folder, write_atomic


def write_run(folder: Path) -> None:
    """A plain lm-eval run's results file (no samples)."""
    folder.mkdir(parents=True)
    results = {"arith_unlock": {"acc,checker": 0.25, "acc_stderr,checker": 0.01}}
    data = {"config": {"model": "hf", "model_args": "pretrained=some-model"}, "results": results, "date": 1.0}
    (folder / "results_2026-01-01T00-00-00.000000.json").write_text(json.dumps(data))


def one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"unlock-eval {command}: error: "), err[-3000:]
    return err.strip()


@pytest.fixture
def no_work(monkeypatch):
    """Every bad path must be said before the work starts: the work fails the test."""
    import unlock_eval.reports
    from unlock_eval.methods.unlock import diagnostics

    def work(*_, **__):
        raise AssertionError("the output path was checked after the work")

    monkeypatch.setattr(unlock_eval.reports, "report", work)
    monkeypatch.setattr(diagnostics, "run_diagnosis", work)


def test_report_output_paths_are_checked_before_the_report_is_read(tmp_path, capsys, no_work):
    results = str(tmp_path)
    (tmp_path / "a_file").write_text("x")
    cases = [
        (["--out", str(tmp_path / "missing" / "r.html")], f"--out {tmp_path / 'missing' / 'r.html'}: no folder"),
        (["--out", str(tmp_path)], f"--out {tmp_path}: a folder, not a file name"),
        (["--format", "md", "--out", str(tmp_path / "r.html")], "--format md: --out"),
        (["--plots", str(tmp_path / "a_file" / "plots")], f"--plots {tmp_path / 'a_file' / 'plots'}: "),
    ]
    for flags, message in cases:
        assert main(["report", results, *flags]) == 2
        assert one_line(capsys, "report").startswith(f"unlock-eval report: error: {message}")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    ("out", "fmt", "start"),
    [("r.md", None, "| method"), ("r.csv", None, "method,"), ("r.html", "html", "<!DOCTYPE html>"),
     ("r.txt", None, "| method")],
)  # fmt: skip
def test_report_format_follows_the_suffix_of_out(tmp_path, out, fmt, start):
    write_run(tmp_path / "runs" / "plain")
    page = tmp_path / out
    assert main(["report", str(tmp_path / "runs"), "--out", str(page), *(["--format", fmt] if fmt else [])]) == 0
    assert page.read_text().startswith(start)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_diagnose_plot_path_is_checked_before_any_capture(tmp_path, capsys, no_work):
    base = ["diagnose", "--source", "smollm2-135m-instruct", "--target", "gemma3-270m"]
    for plot, message in [(tmp_path / "missing" / "x.png", "no folder"), (tmp_path / "x.pdf", "a .png or .svg")]:
        assert main([*base, "--plot", str(plot)]) == 2
        assert message in one_line(capsys, "diagnose")


def test_demo_output_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "results").write_text("not a folder")
    assert main(["demo", "--output", str(tmp_path / "results")]) == 2
    said = one_line(capsys, "demo")
    assert f"--output {tmp_path / 'results'}: {tmp_path / 'results'} is a file, not a folder" in said
    assert main(["demo", "--output", str(tmp_path / "results" / "below")]) == 2  # a file on the way
    assert "is a file, not a folder" in one_line(capsys, "demo")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tasks", "no_such_task"], "--tasks: unknown task(s) no_such_task (`lm_eval ls tasks` lists them)"),
        ([], "--tasks: no task given (`lm_eval ls tasks` lists them)"),
    ],
)
def test_run_says_lm_evals_refusals_in_one_line(capsys, monkeypatch, lm_eval_index, flags, message):
    monkeypatch.setattr("sys.argv", ["unlock-eval"])  # `unlock-eval run` rewrites sys.argv for lm-eval's CLI
    assert main(["run", "--model", "hf", "--model_args", "pretrained=no-such-model", *flags]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"unlock-eval run: error: {message}" and "Traceback" not in err, err[-3000:]
    from lm_eval.config.evaluate_config import EvaluatorConfig

    assert EvaluatorConfig.process_tasks.__qualname__ == "EvaluatorConfig.process_tasks"  # lm-eval's own again


def test_output_helpers(tmp_path):
    assert output_file("--x", str(tmp_path / "a.png"), (".png",)) == tmp_path / "a.png"
    assert output_folder("--x", str(tmp_path / "new" / "deeper")) == tmp_path / "new" / "deeper"
    write_atomic(tmp_path / "a.png", b"\x89PNG")
    assert (tmp_path / "a.png").read_bytes() == b"\x89PNG" and os.listdir(tmp_path) == ["a.png"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "unlok", "--tasks", "arith_unlock"], "--model unlok: no such model; ours are unlock,"),
        (
            ["--model", "hf", "--tasks", "arith_unlock", "--output_path", "FILE"],
            "--output_path FILE: FILE is a file, not a folder",
        ),
        (["--model", "hf", "--tasks", "arith_unlock", "--include_path", "MISSING"], "--include_path MISSING: no such"),
    ],
)
def test_run_refuses_what_lm_eval_finds_out_late_or_never(tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.setattr("sys.argv", ["unlock-eval"])
    (tmp_path / "file").write_text("not a folder")
    paths = {"FILE": str(tmp_path / "file"), "MISSING": str(tmp_path / "missing")}
    flags = [paths.get(f, f) for f in flags]
    for name, path in paths.items():
        message = message.replace(name, path)
    assert main(["run", *flags]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"unlock-eval run: error: {message}") and "Traceback" not in err, err


def test_report_out_with_a_suffix_that_names_no_format_is_refused(tmp_path, capsys, no_work):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.pdf")]) == 2
    assert one_line(capsys, "report").endswith(
        "a report is written as .md, .csv, .tex, .html, .htm; give one of those (figures: --plots FOLDER)"
    )


def test_sweep_limit_zero_is_refused(capsys):
    with pytest.raises(SystemExit) as exited:  # argparse's own refusal: exit status 2
        main(["sweep", "--model_args", "target=x", "--tasks", "arith_unlock", "--alphas", "0.1", "--limit", "0"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "unlock-eval sweep: error: argument --limit: '0': expected a number of documents >= 1 or a fraction 0-1"
    )


def test_model_args_may_hold_a_template_with_braces():
    """lm-eval 0.4.13 read any --model_args holding `{` as JSON; the start-up hook keeps key=value for the rest."""
    import argparse

    from lm_eval._cli.utils import MergeDictAction

    parser = argparse.ArgumentParser()
    parser.add_argument("--model_args", nargs="+", action=MergeDictAction)
    args = parser.parse_args(["--model_args", 'target=t,locked_template="Q, {question}\\nA:\\n"'])
    assert args.model_args == {"target": "t", "locked_template": "Q, {question}\nA:\n"}
    assert parser.parse_args(["--model_args", '{"target": "t"}']).model_args == {"target": "t"}  # JSON still
