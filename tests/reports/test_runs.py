"""Reading lm-eval output folders (reports.runs): a broken results or samples file is skipped with one warning naming
it, never a traceback; the run's cells then read as for a run without samples."""

import json
import logging
import shutil
from pathlib import Path

from unlock_eval.cli import main
from unlock_eval.reports import report
from unlock_eval.reports.formats import render

STAMP = "2026-01-01T00-00-00.000000"


def write_run(folder: Path, model: str, right: set[int], n: int = 20) -> None:
    """A plain lm-eval run of one task with its samples file (right on the documents in `right`)."""
    folder.mkdir(parents=True)
    samples = [{"doc_id": i, "doc": {"question": f"q{i}"}, "doc_hash": f"h{i}", "resps": [[f"It is {i}."]],
                "filtered_resps": [str(i)], "exact_match": float(i in right)} for i in range(n)]  # fmt: skip
    score = len(right) / n
    results = {"tiny": {"exact_match,none": score, "exact_match_stderr,none": (score * (1 - score) / n) ** 0.5}}
    data = {"config": {"model": "hf", "model_args": f"pretrained={model}"}, "results": results, "date": 1.0}
    (folder / f"results_{STAMP}.json").write_text(json.dumps(data))
    (folder / f"samples_tiny_{STAMP}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_truncated_samples_file_is_skipped_with_one_warning_and_its_cells_read_unpaired(tmp_path, caplog, capsys):
    for root in (tmp_path / "broken", tmp_path / "none"):
        write_run(root / "base", "base-model", set(range(0, 20, 4)))
        write_run(root / "other", "other-model", set(range(0, 20, 2)))
    broken = tmp_path / "broken" / "other" / f"samples_tiny_{STAMP}.jsonl"
    text = broken.read_text()
    broken.write_text(text[: len(text) // 2])  # killed while lm-eval wrote it: the last line cut in the middle
    (tmp_path / "none" / "other" / broken.name).unlink()
    caplog.set_level(logging.WARNING, logger="unlock_eval.reports")
    table = report([tmp_path / "broken"])
    warned = _warnings(caplog)
    assert len(warned) == 1 and str(broken) in warned[0] and "not JSON" in warned[0], warned
    assert render(table, "md") == render(report([tmp_path / "none"]), "md")  # as if it had logged no samples
    caplog.clear()
    assert main(["behaviour", str(tmp_path / "broken")]) == 0  # `unlock-eval behaviour` as well
    assert "base-model" in capsys.readouterr().out
    assert len(_warnings(caplog)) == 1 and str(broken) in _warnings(caplog)[0]


def test_a_broken_results_file_is_skipped_with_one_warning_naming_it(tmp_path, caplog):
    write_run(tmp_path / "base", "base-model", {1, 2})
    write_run(tmp_path / "other", "other-model", {2, 3})
    good = tmp_path / "other" / f"results_{STAMP}.json"
    for name, text in {
        "truncated": good.read_text()[:40],
        "foreign": json.dumps({"config": ["not", "a", "config"], "results": {}}),
        "task": json.dumps({"config": {"model": "hf"}, "results": {"arith_unlock": 0.5}}),
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results_2026-01-02T00-00-00.000000.json").write_text(text)
    caplog.set_level(logging.WARNING, logger="unlock_eval.reports")
    table = report([tmp_path])
    assert sorted(run.target for run in table.rows) == ["base-model", "other-model"]
    warned = _warnings(caplog)
    assert len(warned) == 3 and all("not an lm-eval results file" in w for w in warned), warned
    assert sorted(w.split("/")[-2] for w in warned) == ["foreign", "task", "truncated"]
    shutil.rmtree(tmp_path / "base")
    shutil.rmtree(tmp_path / "other")
    assert main(["report", str(tmp_path)]) == 2  # nothing readable left: one line, status 2


def test_a_plain_runs_dtype_is_named_only_when_it_can_be_told_offline(tmp_path):
    from unlock_eval.reports.runs import _engine_dtype

    assert _engine_dtype("bf16", "org/anything") == {"dtype": "bfloat16"}  # given: canonical
    assert _engine_dtype(None, "gemma3-270m") == {"dtype": "float32"}  # an embedded name: its converted copy
    assert _engine_dtype(None, "no-org/not-in-the-hub-cache") == {}  # auto, config not at hand: unknown, not float32
    (tmp_path / "config.json").write_text('{"text_config": {"torch_dtype": "torch.bfloat16"}}')
    assert _engine_dtype("auto", str(tmp_path)) == {"dtype": "bfloat16"}  # a local folder's config
