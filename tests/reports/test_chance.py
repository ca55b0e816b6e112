"""Strict accuracy, fallback share and the permutation chance level (reports.chance), and the report's columns
recomputed here from hand-written samples files."""

import csv
import io
import json
import re
from pathlib import Path

import pytest

from unlock_eval.checker import STRICT_RULES
from unlock_eval.reports import report
from unlock_eval.reports.chance import CHANCE_DRAWS, chance_level, record_of, scoring
from unlock_eval.reports.formats import render

N = 40
LUCKY = 10  # documents whose gold is 1: a run that always says "1" hits them, and hits them by chance as well


def _sample(doc_id: int, gold: str, text: str, answer: str | None, rule: str | None, correct: bool, **doc) -> dict:
    record = {"answer": answer, "rule": rule, "gold": gold, "correct": correct, "verdict": "x", "gen_len_pieces": 3}
    return {
        "doc_id": doc_id,
        "doc": {"question": f"q{doc_id}", "gold_answer": gold, **doc},
        "resps": [[text]],
        "filtered_resps": [json.dumps(record)],  # what lm-eval writes: str() of our ScoreRecord
        "doc_hash": f"h{doc_id}",
        "acc": float(correct),
        "acc_strict": float(correct and rule in STRICT_RULES),
        "answer_found": float(answer is not None),
        "gen_len_pieces": 3.0,
    }


def golds() -> list[str]:
    return ["1" if i < LUCKY else str(100 + i) for i in range(N)]


def counting_run() -> list[dict]:
    """Always a counting list ending in 1 ('Friend 1:'): right by last_number on the LUCKY documents only."""
    return [_sample(i, g, "Friend 1:", "1", "last_number", g == "1") for i, g in enumerate(golds())]


def atok_run() -> list[dict]:
    """Always its own gold in <atok>: every answer right, strict; the golds are distinct beyond the first LUCKY."""
    return [_sample(i, g, f"The final answer is <atok> {g}", g, "atok", True) for i, g in enumerate(golds())]


def keyed(samples: list[dict], task: str = "arith_unlock") -> dict:
    return {(task, s["doc_id"]): s for s in samples}


def test_scoring_of_hand_made_samples():
    lucky = scoring(keyed(counting_run()))
    assert (lucky.n, lucky.lenient, lucky.strict, lucky.fallback_share) == (N, LUCKY / N, 0.0, 1.0)
    assert lucky.rule_counts == {"last_number": N}
    # one answer against a bijection of the golds: exactly LUCKY hits in every draw
    assert lucky.chance.draws == [LUCKY / N] * CHANCE_DRAWS and lucky.chance.level == LUCKY / N
    half = 1.96 * (0.25 * 0.75 / N) ** 0.5
    assert (lucky.chance.low, lucky.chance.high) == pytest.approx((0.25 - half, 0.25 + half))
    assert lucky.at_chance is True
    sure = scoring(keyed(atok_run()))
    assert (sure.lenient, sure.strict, sure.fallback_share, sure.at_chance) == (1.0, 1.0, 0.0, False)
    # the first LUCKY documents share gold 1: chance hits only where one of them takes another's gold
    assert 0 <= sure.chance.level <= LUCKY / N
    mixed = keyed([_sample(99, "6", "no idea", None, None, False), *counting_run()[:3]])
    s = scoring(mixed)
    assert s.rule_counts == {"none": 1, "last_number": 3} and s.lenient == 0.75 and s.fallback_share == 1.0
    assert scoring(None) is None and scoring({("t", 0): {"filtered_resps": ["plain text"]}}) is None


def test_chance_level_is_seeded_and_uses_other_documents_of_the_same_task():
    items = [("a", "1", ("1",)), ("a", "2", ("2",)), ("b", "1", ("1",)), ("b", "2", ("2",))]
    # two documents per task: each takes the other's gold, never its own, never another task's
    assert chance_level(items).draws == [0.0] * CHANCE_DRAWS
    random_items = [("t", str(i % 3), (str(i % 4),)) for i in range(30)]
    assert chance_level(random_items) == chance_level(random_items)  # fixed seed
    assert chance_level([("t", "1", ("1",))]) is None  # one document: no other gold to take


def test_multiple_choice_chance_uses_the_letter_and_the_option():
    letters = "ABCD" * 5
    samples = [_sample(i, x, " (A)", "(A)", "choice", x == "A", gold_option=str(i)) for i, x in enumerate(letters)]
    s = scoring(keyed(samples, "agieval_sat_math_unlock"))
    assert s.chance.level == 0.25 and s.strict == 0.0 and s.fallback_share == 1.0  # A is a quarter of the golds
    assert record_of(samples[0])["rule"] == "choice"


def _write_run(folder: Path, name: str, samples: list[dict], **metrics: float) -> None:
    folder.mkdir(parents=True)
    acc = sum(s["acc"] for s in samples) / len(samples)
    strict = sum(s["acc_strict"] for s in samples) / len(samples)
    results = {"acc,checker": acc, "acc_stderr,checker": 0.01, "acc_strict,checker": strict}
    results.update({f"{metric},checker": value for metric, value in metrics.items()})
    stamp = "2026-01-01T00-00-00.000000"
    data = {"config": {"model": "hf", "model_args": f"pretrained={name}"}, "results": {"arith_unlock": results}}
    (folder / f"results_{stamp}.json").write_text(json.dumps({**data, "date": 1.0}))
    (folder / f"samples_arith_unlock_{stamp}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))


def test_report_columns_recomputed_from_the_samples_files(tmp_path):
    _write_run(tmp_path / "counting", "counting-model", counting_run())
    _write_run(tmp_path / "atok", "atok-model", atok_run())
    table = report([tmp_path])
    assert table.checked_columns == ["arith_unlock"] and table.reference_columns == []  # no acc_reference: no column
    records = {r["target"]: r for r in csv.DictReader(io.StringIO(render(table, "csv")))}
    assert "arith_unlock_reference" not in records["atok-model"]
    for folder in ("counting", "atok"):
        lines = next((tmp_path / folder).glob("samples_*.jsonl")).read_text().splitlines()
        recs = [json.loads(json.loads(line)["filtered_resps"][0]) for line in lines]
        correct = [r for r in recs if r["correct"]]
        strict = [r for r in correct if r["rule"] in STRICT_RULES]
        row = records[f"{folder}-model"]
        assert float(row["arith_unlock"]) == pytest.approx(len(correct) / len(recs))  # lenient, lm-eval's acc
        assert float(row["arith_unlock_strict"]) == pytest.approx(len(strict) / len(recs))
        assert float(row["arith_unlock_fallback_share"]) == pytest.approx(1 - len(strict) / len(correct))
        assert row["arith_unlock_at_chance"] == str(folder == "counting")
    assert float(records["counting-model"]["arith_unlock_chance"]) == pytest.approx(LUCKY / N)
    md = render(table, "md")
    header = next(line for line in md.splitlines() if "arith_unlock strict" in line)
    cells = [c.strip() for c in header.strip("|").split("|")]
    at = cells.index("arith_unlock strict")  # strict leads, then the lenient score, its Δ, chance, fallback share
    assert cells[at : at + 5] == [
        "arith_unlock strict",
        "arith_unlock lenient",
        "Δ arith_unlock",
        "arith_unlock chance",
        "fallback share",
    ]
    counting_line = next(line for line in md.splitlines() if "counting-model" in line)
    assert "0.250 ± 0.010 ≈" in counting_line and "100%" in counting_line and "0.250 [0.116, 0.384]" in counting_line
    atok_line = next(line for line in md.splitlines() if "atok-model" in line)
    assert "≈" not in atok_line and "0%" in atok_line
    assert "at chance" in render(table, "latex")


def test_without_samples_strict_comes_from_the_metric(tmp_path):
    _write_run(tmp_path / "counting", "counting-model", counting_run())
    next((tmp_path / "counting").glob("samples_*.jsonl")).unlink()
    table = report([tmp_path])
    s = table.scoring[(0, "arith_unlock")]
    assert (s.lenient, s.strict, s.fallback_share, s.chance, s.at_chance) == (0.25, 0.0, 1.0, None, None)


def _read_by_the_paper(samples: list[dict]) -> list[dict]:
    """The same run with the paper's reading logged too: it gets the first LUCKY documents wrong."""
    for s in samples:
        record = json.loads(s["filtered_resps"][0])
        record.update(reference_answer="x", reference_correct=s["doc_id"] >= LUCKY)
        s["filtered_resps"] = [json.dumps(record)]
        s["acc_reference"] = float(record["reference_correct"])
    return samples


def test_the_reference_column_follows_the_lenient_score_and_its_delta(tmp_path):
    """acc_reference (tasks: the paper's reading) gets a column after the Δ in every format, from the samples'
    records; a row without it leaves the cell blank; without samples the metric gives it."""
    _write_run(tmp_path / "counting", "counting-model", counting_run())
    _write_run(tmp_path / "atok", "atok-model", _read_by_the_paper(atok_run()), acc_reference=0.5)  # samples win
    table = report([tmp_path])
    assert table.reference_columns == ["arith_unlock"]
    records = {r["target"]: r for r in csv.DictReader(io.StringIO(render(table, "csv")))}
    assert float(records["atok-model"]["arith_unlock_reference"]) == pytest.approx(1 - LUCKY / N)
    assert records["counting-model"]["arith_unlock_reference"] == ""
    md = render(table, "md")
    header = next(line for line in md.splitlines() if "arith_unlock strict" in line)
    cells = [c.strip() for c in header.strip("|").split("|")]
    at = cells.index("arith_unlock strict")
    assert cells[at : at + 6] == [
        "arith_unlock strict",
        "arith_unlock lenient",
        "Δ arith_unlock",
        "arith_unlock reference",
        "arith_unlock chance",
        "fallback share",
    ]
    for line, expected in (("atok-model", "0.750"), ("counting-model", "")):
        row = [c.strip() for c in next(x for x in md.splitlines() if line in x).strip("|").split("|")]
        assert row[at + 3] == expected, row
    assert "reference (acc_reference)" in md
    page = render(table, "html")
    assert re.search(r'<th class="task" colspan="6">arith_unlock</th>', page) and "<th>reference</th>" in page
    assert "0.750" in page
    assert "arith_unlock reference" in render(table, "latex").replace("\\_", "_")
    next((tmp_path / "atok").glob("samples_*.jsonl")).unlink()
    again = report([tmp_path])
    atok = next(i for i, run in enumerate(again.rows) if run.target == "atok-model")
    assert again.scoring[(atok, "arith_unlock")].reference == 0.5
