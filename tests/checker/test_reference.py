"""Tests of unlock_eval.checker.reference: the paper's reading per data set (a hand-made table, each case checked
once against the official code's parser.py), the cases where it and our checker read differently, its clean-up
(strip_string), input errors, and acc_reference end to end through the tasks' process_results."""

from __future__ import annotations

import pytest

from unlock_eval.checker import REFERENCE_DATASETS, REFERENCE_TIMEOUT, extract_answer, extract_reference
from unlock_eval.checker.reference import STOP_STRINGS, reference_strip

SAT_CHOICES = ["(A)2", "(B)4", "(C)9", "(D)10"]

# (data set, text, gold, expected reading). gold only matters for agieval_math; SAT-Math reads SAT_CHOICES.
READINGS: list[tuple[str, str, str, str | None]] = [
    # gsm8k (and arith): pieces between markers, shortest first; first word; last number of the piece
    ("gsm8k", "2 + 16 = 18. The final answer is <atok> 18", "18", "18"),
    ("gsm8k", "He pays 3 * 4 = <<3*4=12>>12 dollars.\n#### 12", "12", "12"),
    ("gsm8k", "She earns $18 per day.", "18", "$18"),  # no marker: the piece's last number, '$' and all
    ("gsm8k", "The answer is five apples", "5", "5"),  # number words become digits (strip_string's word2number)
    ("gsm8k", "The final answer is <atok> 1,234", "1234", "1,234"),
    ("gsm8k", "The final answer is <atok> \\frac{3}{4}", "0.75", "4"),  # cut before '\f': the last number, 4
    ("gsm8k", "We get 12 apples and then 7 more", "7", "7"),
    ("gsm8k", "I do not know", "7", None),
    ("arith", "The answer is 2π", "6.28", "2*3.14"),  # word problems: pi as 3.14
    ("arith", "18 + 7 = 25. The final answer is <atok> 25", "25", "25"),
    # math / math500: pieces shortest first; last '='; \boxed{} and $...$; strip_string; last number as fallback
    ("math", "So the answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", "{\\frac{1}{2}}"),
    ("math", "So x = 7. Thus the answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", "7"),  # the shorter piece
    ("math", "The final answer is <atok> \\dfrac{3}{4}", "\\frac{3}{4}", "\\frac{3}{4}"),
    ("math", "The final answer is <atok> 2\\pi", "2\\pi", "2\\pi"),
    ("math", "The final answer is <atok> 5.00", "5", "5"),
    ("math", "We find x = 3/4", "\\frac34", "\\frac{3}{4}"),
    ("math", "The area is 10 \\text{ cm}^2 in all", "10", "area  10  cm^2 in all"),  # not a bare number: all of it
    ("math500", "Final Answer: The final answer is $(3, 4)$. ", "(3,4)", "(3, 4)"),
    ("math500", "no idea at all", "1", "no idea at all"),  # any piece with a letter in it is an answer
    # agieval_math: parts after the markers; a numeric gold reads the last number of the whole text
    ("agieval_math", "We get 12 and 30. The final answer is <atok> 42", "42", "42"),
    ("agieval_math", "The answer is 30. We check: 12 + 18 = 30, plus 5 is 35.", "30", "35"),  # last number: 35
    ("agieval_math", "So the answer is $\\boxed{(3,4]}$.", "(3,4]", "34"),  # numeric gold; commas removed
    ("agieval_math", "The final answer is <atok> \\frac{16}{2}", "8", "\\frac{16}{2}"),  # \frac: not a bare number
    ("agieval_math", "The final answer is <atok> \\frac{1}{2} and 7", "\\frac{1}{2}", "\\frac{1}{2}  7"),  # 'and' gone
    ("agieval_math", "n is odd, so the final answer is <atok> even", "\\text{even}", "even"),  # gold without digits
    ("agieval_math", "The final answer is <atok> ", "3", None),
    # agieval_sat_math: the reference's four-option reading (a letter; else the option whose text comes last)
    ("agieval_sat_math", "The final answer is <atok> (D)", "D", "D"),
    ("agieval_sat_math", "(C) 9", "D", "C"),
    ("agieval_sat_math", "I pick b", "D", "B"),  # one piece: its stand-alone letter, any case
    ("agieval_sat_math", "So x equals 10 here", "D", "D"),  # no letter: the option text 10 occurs in the piece
    ("agieval_sat_math", "Hmm", "D", None),
    # every data set: the reference's stop strings cut the text first
    ("gsm8k", "The final answer is <atok> 5 </atok> Question: what is 7?", "5", "5"),
    ("math", "   ", "5", None),
    ("math", "Question: 2 + 2", "4", None),
]


@pytest.mark.parametrize(
    ("dataset", "text", "gold", "expected"), READINGS, ids=[f"{d}:{t[:40]}" for d, t, *_ in READINGS]
)
def test_reading_table(dataset, text, gold, expected):
    assert extract_reference(text, dataset, gold=gold, choices=SAT_CHOICES) == expected


def test_the_table_covers_every_data_set():
    assert {row[0] for row in READINGS} == set(REFERENCE_DATASETS)


# (data set, text, gold, our reading, the reference's): where the two differ
DIFFERENCES = [
    ("math", "So x = 7. Thus the answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", "\\frac{1}{2}", "7"),
    (
        "math500",
        "1+1=2. So the answer is $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.",
        "",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        "2",
    ),
    ("agieval_math", "So the answer is $\\boxed{(3,4]}$.", "(3,4]", "(3,4]", "34"),
    ("agieval_math", "The answer is 30. We check: 12 + 18 = 30, plus 5 is 35.", "30", "30", "35"),
    ("gsm8k", "The final answer is <atok> \\frac{3}{4}", "0.75", "\\frac{3}{4}", "4"),
    ("gsm8k", "The answer is five apples", "5", "five apples", "5"),
]


@pytest.mark.parametrize(("dataset", "text", "gold", "ours", "theirs"), DIFFERENCES)
def test_where_our_reading_and_the_references_differ(dataset, text, gold, ours, theirs):
    assert extract_answer(text) == ours
    assert extract_reference(text, dataset, gold=gold or "x") == theirs


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\\dfrac12", "\\frac{1}{2}"),
        ("\\frac1{72}", "\\frac{1}{72}"),
        ("3/4", "\\frac{3}{4}"),
        ("5.00", "5"),
        ("10\\text{ cm}", "10"),
        ("\\text{Monday}", "Monday"),
        ("x=5", "5"),
        ("50\\%", "50"),
        ("90^\\circ", "90"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("\\left( 1, 2 \\right)", "( 1, 2 )"),
        ("3 and 4", "3  4"),
        ("twenty one", "21"),
        ("one point five", "1.5"),
        ("two million three thousand", "2004003"),  # word2number's own formula, followed as it is
        ("007", "7"),
        ("1,000", "1,000"),
        (".5", "0.5"),
        ("\\emptyset", "{}"),
        ("", ""),
    ],
)
def test_reference_strip(raw, clean):
    assert reference_strip(raw) == clean


def test_limits_and_stops_are_the_references():
    assert REFERENCE_TIMEOUT == 3.0
    assert STOP_STRINGS[-1] == "</atok>" and "I hope" in STOP_STRINGS and len(STOP_STRINGS) == 19


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown data set 'aime'"):
        extract_reference("5", "aime")
    with pytest.raises(TypeError, match="text must be a str"):
        extract_reference(None, "gsm8k")
    with pytest.raises(ValueError, match="needs the gold answer"):
        extract_reference("5", "agieval_math")


# --------------------------------------------------------------------------------------------------
# acc_reference end to end: documents from the tasks' process_* functions, then process_results
# --------------------------------------------------------------------------------------------------


def _docs(process, rows):
    from datasets import Dataset

    return list(process(Dataset.from_list(rows)))


def test_process_results_reports_acc_reference():
    from unlock_eval.tasks import utils

    gsm = _docs(utils.process_gsm8k, [{"question": "q", "answer": "3 * 6 = 18\n#### 18"}])[0]
    math = _docs(utils.process_math, [{"problem": "p", "level": "1", "type": "t", "solution": "$\\boxed{\\frac12}$"}])
    agi = _docs(utils.process_agieval_math, [{"query": "Q: How many?\nA: The answer is", "answer": "35"}])[0]
    sat_row = {"query": "Q: x? Answer Choices: (A)2 (B)4 (C)9 (D)10\nA: Among A through D, the answer is"}
    sat = _docs(utils.process_agieval_sat_math, [{**sat_row, "choices": SAT_CHOICES, "gold": [3]}])[0]
    arith = _docs(utils.process_arith, [{"question": "q", "answer": "2 + 3 = 5\n#### 5"}])[0]
    assert [d["reference_dataset"] for d in (gsm, math[0], agi, sat, arith)] == [
        "gsm8k",
        "math",
        "agieval_math",
        "agieval_sat_math",
        "arith",
    ]
    cases = [  # (doc, text, acc, acc_reference, reference_answer)
        (gsm, "6 * 3 = 18. The final answer is <atok> 18", 1.0, 1.0, "18"),
        (gsm, "She earns $18 per day.", 1.0, 1.0, "$18"),  # our checker reads the '$18' the reference found
        (math[0], "So x = 7. Thus the answer is $\\boxed{\\frac{1}{2}}$.", 1.0, 0.0, "7"),  # the reading alone
        (agi, "The answer is 30. We check: 12 + 18 = 30, plus 5 is 35.", 0.0, 1.0, "35"),  # and the other way
        (sat, "So x equals 10 here", 1.0, 1.0, "D"),
        (sat, "The final answer is <atok> (B)", 0.0, 0.0, "B"),
        (arith, "I do not know", 0.0, 0.0, None),
    ]
    for doc, text, acc, reference, answer in cases:
        scorer = utils.checker_choice_filter if "gold_option" in doc else utils.checker_filter  # as the YAML says
        record = scorer([[text]], [doc])[0][0]
        assert (record["reference_answer"], record["reference_correct"]) == (answer, bool(reference)), text
        metrics = utils.process_results(doc, [record])
        assert (metrics["acc"], metrics["acc_reference"]) == (acc, reference), text
        assert utils.process_results(doc, [text])["acc_reference"] == reference  # from the raw text too
    own_task = {"question": "q", "gold_answer": "18"}  # a task of one's own: no data set, no acc_reference
    record = utils.score_text("The answer is 18", own_task)
    assert (record["reference_answer"], record["reference_correct"]) == (None, None)
    assert "acc_reference" not in utils.process_results(own_task, [record])


def test_the_reference_comparison_runs_within_its_3_s(monkeypatch):
    from unlock_eval.checker import Verdict
    from unlock_eval.tasks import utils

    limits = []

    def spy(pred, gold, timeout=5.0):
        limits.append(timeout)
        return Verdict(pred == gold, "identical")

    monkeypatch.setattr(utils, "check", spy)
    doc = {"question": "q", "gold_answer": "18", "reference_dataset": "gsm8k"}
    record = utils.score_text("The final answer is <atok> 18", doc)
    assert limits == [5.0, REFERENCE_TIMEOUT] and record["reference_correct"] is True
