"""Tests of unlock_eval.checker: extraction rules, the hand-written equivalence table (every category,
equal and not equal), the hard time limit on adversarial input, the worker wiring, and input errors.

``CASES`` (category, pred, gold, expected) is also read by benchmarks/checker_agreement.py.
"""

from __future__ import annotations

import dis
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from unlock_eval import checker
from unlock_eval.checker import Checker, Extraction, Verdict, equivalence, extract, extract_answer, is_equiv, normalize

# --------------------------------------------------------------------------------------------------
# The hand-written table: (category, pred, gold, expected)
# --------------------------------------------------------------------------------------------------

CASES: list[tuple[str, str, str, bool]] = [
    # numbers: thousands separators, signs, $, %, units, \text{}
    ("numbers", "1,000", "1000", True),
    ("numbers", "1{,}000", "1000", True),
    ("numbers", "1\\,000", "1000", True),
    ("numbers", "1\\,000", "0", False),
    ("numbers", "2,125", "2125", True),
    ("numbers", "-2,125", "-2125", True),
    ("numbers", "1,2", "12", False),
    ("numbers", "-5", "-5", True),
    ("numbers", "−5", "-5", True),
    ("numbers", "+5", "5", True),
    ("numbers", "5", "-5", False),
    ("numbers", "\\$18", "18", True),
    ("numbers", "$18.50", "18.5", True),
    ("numbers", "\\$1,000", "1000", True),
    ("numbers", "$\\frac{1}{2}$.", "0.5", True),
    ("numbers", "18.00", "18", True),
    ("numbers", "18 dollars", "18", True),
    ("numbers", "18\\text{ apples}", "18", True),
    ("numbers", "10 \\text{ cm}", "10", True),
    ("numbers", "5 cm^2", "5", True),
    ("numbers", "5 million", "5", False),
    ("numbers", "50\\%", "50", True),
    ("numbers", "50%", "0.5", True),
    ("numbers", "40\\%", "50", False),
    ("numbers", "1e3", "1000", True),
    ("numbers", "10^{10}", "10000000000", True),
    ("numbers", "5", "6", False),
    # fractions, decimals, mixed forms
    ("fractions", "\\frac{1}{2}", "0.5", True),
    ("fractions", "\\dfrac12", "1/2", True),
    ("fractions", "\\tfrac{3}{4}", "3/4", True),
    ("fractions", "0.75", "\\frac{3}{4}", True),
    ("fractions", "2\\frac{1}{2}", "5/2", True),
    ("fractions", "1 1/2", "\\frac{3}{2}", True),
    ("fractions", "\\dfrac{5}{2}", "2\\tfrac{1}{2}", True),
    ("fractions", "0.3333333", "\\frac{1}{3}", True),
    ("fractions", "0.33", "\\frac{1}{3}", False),
    ("fractions", "\\frac{2}{3}", "\\frac{3}{2}", False),
    ("fractions", "10", "10.0", True),
    # radicals, pi, degrees
    ("radicals", "\\sqrt{8}", "2\\sqrt{2}", True),
    ("radicals", "\\sqrt2/2", "\\frac{\\sqrt{2}}{2}", True),
    ("radicals", "\\sqrt[3]{8}", "2", True),
    ("radicals", "3\\sqrt{2}", "2\\sqrt{3}", False),
    ("radicals", "2\\pi", "2\\pi", True),
    ("radicals", "\\pi/2", "\\frac{\\pi}{2}", True),
    ("radicals", "2\\pi r", "2r\\pi", True),
    ("radicals", "\\pi", "3.14", False),
    ("radicals", "3 pi", "3", False),
    ("degrees", "90^\\circ", "90", True),
    ("degrees", "30", "30^{\\circ}", True),
    ("degrees", "30 degrees", "30", True),
    ("degrees", "45^\\circ", "60^\\circ", False),
    # intervals: open/closed ends matter
    ("intervals", "(1,2]", "(1,2]", True),
    ("intervals", "(1, 2]", "\\left(1,2\\right]", True),
    ("intervals", "(1,2)", "(1,2]", False),
    ("intervals", "[1,2]", "(1,2]", False),
    ("intervals", "(-\\infty, 3)", "(-\\infty,3)", True),
    ("intervals", "(-\\infty,0)\\cup(1,\\infty)", "(-\\infty,0)\\cup(1,\\infty)", True),
    ("intervals", "(-\\infty,0]\\cup(1,\\infty)", "(-\\infty,0)\\cup(1,\\infty)", False),
    ("intervals", "x \\in [1,2]", "[1,2]", True),
    ("intervals", "\\((1,2)\\)", "(1,2]", False),
    # tuples (ordered)
    ("tuples", "(3, 4)", "(3,4)", True),
    ("tuples", "(1,2,3)", "(1,2,3)", True),
    ("tuples", "(1,2,3)", "(3,2,1)", False),
    ("tuples", "(1, -2)", "(1,-2)", True),
    ("tuples", "(2,1)", "(1,2)", False),
    ("tuples", "\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    # unordered sets and answer lists
    ("sets", "\\{1,2\\}", "\\{2,1\\}", True),
    ("sets", "1, 2, 3", "3, 1, 2", True),
    ("sets", "2, -3", "-3, 2", True),
    ("sets", "x=2, x=-3", "-3, 2", True),
    ("sets", "2 and 3", "3, 2", True),
    ("sets", "70, 110", "70,110", True),
    ("sets", "70110", "70,110", True),
    ("sets", "1,2", "1,2,3", False),
    ("sets", "1, 4", "1, 2", False),
    # matrices
    ("matrices", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("matrices", "\\begin{bmatrix} 1 \\\\ 2 \\end{bmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("matrices", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
    ("matrices", "\\begin{pmatrix}1/2\\\\0\\end{pmatrix}", "\\begin{pmatrix}0.5\\\\0\\end{pmatrix}", True),
    ("matrices", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", False),
    ("matrices", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", False),
    # equations against values
    ("equations", "x = 3", "3", True),
    ("equations", "3", "x=3", True),
    ("equations", "k = \\frac{1}{2}", "\\frac12", True),
    ("equations", "y = 2x+1", "2x+1", True),
    ("equations", "x=4", "3", False),
    ("equations", "y=3", "x=3", False),
    ("equations", "11x+6y+5z+86=0", "0", False),
    ("equations", "2x+3=7", "2", False),
    # symbolic expressions
    ("symbolic", "x^2-1", "(x-1)(x+1)", True),
    ("symbolic", "x^2+2x+1", "(x+1)^2", True),
    ("symbolic", "\\frac{x}{2}", "0.5x", True),
    ("symbolic", "a+b", "b+a", True),
    ("symbolic", "3+4i", "4i+3", True),
    ("symbolic", "x^2", "x^3", False),
    ("symbolic", "\\frac{1}{x+1}", "\\frac{1}{x-1}", False),
    ("symbolic", "3-4i", "3+4i", False),
    ("symbolic", "-\\infty", "\\infty", False),
    # text answers and choice letters
    ("text", "\\text{(B)}", "B", True),
    ("text", "(B)", "B", True),
    ("text", "\\text{Evelyn}", "Evelyn", True),
    ("text", "\\text{Monday}", "Monday", True),
    ("text", "B", "C", False),
    ("text", "\\text{yes}", "\\text{no}", False),
]


@pytest.fixture(scope="module")
def ck():
    with Checker(timeout=5.0) as c:
        c.start()
        yield c


@pytest.mark.parametrize(("category", "pred", "gold", "expected"), CASES, ids=[f"{c}:{p}|{g}" for c, p, g, _ in CASES])
def test_equivalence_table(ck, category, pred, gold, expected):
    verdict = ck.check(pred, gold)
    assert verdict.equal is expected, f"[{category}] {pred!r} vs {gold!r}: {verdict}"
    assert verdict.reason in ({"identical", "equivalent"} if expected else {"different"})


def _lines_run(funcs, calls) -> tuple[set, set]:
    """((function, line) for every line of ``funcs`` that holds code, those of them that ``calls`` ran)."""
    codes = {f.__code__ for f in funcs}
    lines = {
        (f.__name__, n) for f in funcs for _, n in dis.findlinestarts(f.__code__) if n and n > f.__code__.co_firstlineno
    }
    ran: set = set()

    def local(frame, event, arg):
        if event == "line":
            ran.add((frame.f_code.co_name, frame.f_lineno))
        return local

    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: local if frame.f_code in codes else None)
    try:
        for call in calls:
            call()
    finally:
        sys.settrace(previous)
    return lines, ran


def test_table_covers_every_category_and_every_normalisation_rule():
    for category in {c for c, *_ in CASES}:
        outcomes = {e for c, _, _, e in CASES if c == category}
        assert outcomes == {True, False}, f"category {category!r} needs an equal and a not-equal case"
    # Every rewrite of the hand-written part (each `if` body of normalize and its helpers, both
    # readings of '70,110') must be reached by some table answer, so the table checks its effect.
    answers = [a for _, pred, gold, _ in CASES for a in (pred, gold)]
    funcs = (normalize, equivalence._strip_wrappers, equivalence._squeeze_spaces, equivalence._readings)
    lines, ran = _lines_run(funcs, [lambda a=a: equivalence._readings(normalize(a)) for a in answers])
    assert lines - ran == set(), "lines of the normalisation no table case reaches"


def test_results_do_not_depend_on_order_or_history():
    pairs = [(p, g) for _, p, g, _ in CASES[::5]]
    with Checker() as a, Checker() as b:
        forward = [a.is_equiv(p, g) for p, g in pairs]
        backward = [b.is_equiv(p, g) for p, g in reversed(pairs)][::-1]
        again = [a.is_equiv(p, g) for p, g in pairs]
    assert forward == backward == again


# --------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------

EXTRACTIONS = [
    # atok: the paper's 'The final answer is <atok> x </atok>.'; lm-eval stops at '</atok>' and cuts it off
    ("Janet has 16 eggs... She makes 9 * 2 = 18 dollars.\nThe final answer is <atok> 18 ", "18", "atok"),
    ("She makes 9 * 2 = 18 dollars. The final answer is <atok> 18 </atok>.", "18", "atok"),
    ("So the probability is one half.\nThe final answer is <atok> \\frac{1}{2} ", "\\frac{1}{2}", "atok"),
    ("The final answer is <atok> $18$ ", "18", "atok"),
    ("The final answer is <atok> $\\boxed{\\frac{\\sqrt{3}}{2}}$ </atok>.", "\\frac{\\sqrt{3}}{2}", "atok"),
    ("The final answer is <atok> 18 dollars. ", "18 dollars", "atok"),
    ("The final answer is <atok> **(B)** ", "(B)", "atok"),
    ("The final answer is <atok> 3.5 </ato", "3.5", "atok"),
    ("The final answer is <atok> -7 </", "-7", "atok"),
    ("The final answer is <atok> 18 <", "18", "atok"),
    ("The final answer is <ATOK>12</ATOK>.", "12", "atok"),
    ("The final answer is < atok > 12 < /atok >", "12", "atok"),
    ("The final answer is <atok>\n18\n</atok>", "18", "atok"),
    ("x = 6, so the final answer is <atok> 42\nQuestion: What is 6 * 8?\nAnswer: 48", "42", "atok"),
    ("we get \\boxed{5} ... wait, 5 + 2 = 7. The final answer is <atok> 7 ", "7", "atok"),
    ("#### 4\nFinal Answer: 5\nThe answer is 6. The final answer is <atok> 7 ", "7", "atok"),
    # an echoed '[answer]' placeholder or an empty tag is skipped: the <atok> before it, else the other rules
    (
        'I must end with "The final answer is <atok> [answer] </atok>." 3 + 4 = 7.\nThe final answer is <atok> 7 ',
        "7",
        "atok",
    ),
    ("The final answer is <atok> 18 </atok>. Format: end with <atok> [answer] </atok>", "18", "atok"),
    ("The final answer is <atok> 18 </atok>. The final answer is <atok> </atok>", "18", "atok"),
    ("3 + 4 = 7. The final answer is <atok> [answer] ", "7", "last_number"),
    ("3 + 4 = 7. The final answer is <atok> [Answer] </at", "7", "last_number"),
    ("So $x = \\boxed{3}$. The final answer is <atok> ", "3", "boxed"),
    ("The final answer is <atok> [answer] </atok>", None, None),
    # boxed: last one, nested braces, \fbox, \boxed 5, truncated and empty boxes
    ("So $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", "boxed"),
    ("first \\boxed{1} then \\boxed{\\{1, 2\\}}", "\\{1, 2\\}", "boxed"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", "boxed"),
    ("the answer is \\fbox{7}", "7", "boxed"),
    ("Hence $\\boxed 5$.", "5", "boxed"),
    ("\\boxed{3} and then \\boxed{4", "3", "boxed"),
    ("piecewise $\\left\\{ x \\right.$ so \\boxed{2}", "2", "boxed"),
    ("\\boxed{} The answer is 4.", "4", "answer_is"),
    # GSM8K marker
    ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72", "gsm8k"),
    ("#### 2,125", "2,125", "gsm8k"),
    ("#### -3\n", "-3", "gsm8k"),
    # Final Answer (Minerva) and 'the answer is'
    ("Final Answer: The final answer is $[2,5)$. I hope it is correct.", "[2,5)", "final_answer"),
    ("Final Answer: 42", "42", "final_answer"),
    ("So the answer is 3.5.", "3.5", "answer_is"),
    ("Therefore, the answer is: $\\frac{3}{4}$ cups.", "\\frac{3}{4}", "answer_is"),
    ("The answer is 18 dollars. Next question", "18 dollars", "answer_is"),
    ("The answer is **12**", "12", "answer_is"),
    ("The final answer is (B).", "(B)", "answer_is"),
    ("the answer is 5. wait, no: the answer is 6.", "6", "answer_is"),
    ("#### 4 #### 5", "5", "gsm8k"),
    # 'final answer is' without 'the' (the paper's parser accepts it); a bare 'answer is' does not count
    ("Final answer is 12", "12", "answer_is"),
    ("So my final answer is: 3/4.", "3/4", "answer_is"),
    ("The correct answer is 5, not 6.", "6", "last_number"),
    # last number fallback
    (" 16 x 3 = 48 eggs", "48", "last_number"),
    ("It costs $1,250.50 in total.", "1,250.50", "last_number"),
    ("about -3 degrees", "-3", "last_number"),
    ("so we get 3/4", "3/4", "last_number"),
    ("so $x=\\frac{1}{2}$", "\\frac{1}{2}", "last_number"),
    ("step 2: x2 = 7", "7", "last_number"),
    # nothing
    ("I do not know.", None, None),
    ("", None, None),
]


@pytest.mark.parametrize(("text", "answer", "rule"), EXTRACTIONS)
def test_extract(text, answer, rule):
    assert extract(text) == Extraction(answer, rule)
    assert extract_answer(text) == answer
    assert extract(text).found is (answer is not None)


def test_rule_priority():
    text = "The answer is 3. #### 4\nFinal Answer: 5 \\boxed{6}"
    assert extract(text).rule == "boxed"
    assert extract("The answer is 3. #### 4\nFinal Answer: 5").rule == "gsm8k"
    assert extract("The answer is 3.\nFinal Answer: 5").answer == "5"
    assert extract("The answer is 3. #### 4\nFinal Answer: 5 \\boxed{6} <atok> 7").rule == "atok"
    assert checker.RULES == ("atok", "boxed", "gsm8k", "final_answer", "answer_is", "last_number")


@pytest.mark.parametrize(
    ("text", "rule", "gold", "equal"),
    [
        ("She makes 9 * 2 = 18 dollars.\nThe final answer is <atok> $18$ ", "atok", "18", True),
        ("She makes 9 * 2 = 18 dollars.\nThe final answer is <atok> 18 dollars. ", "atok", "18", True),
        ("So the probability is one half.\nThe final answer is <atok> \\frac{1}{2} ", "atok", "0.5", True),
        ("we get \\boxed{5} ... wait, 5 + 2 = 7. The final answer is <atok> 7 ", "atok", "7", True),
        ("we get \\boxed{5} ... wait, 5 + 2 = 7. The final answer is <atok> 7 ", "atok", "5", False),
        ("3 + 4 = 7. The final answer is <atok> [answer] ", "last_number", "7", True),
        ("Final answer is 12", "answer_is", "12", True),
    ],
)
def test_atok_extraction_then_check(ck, text, rule, gold, equal):
    """End to end: the answer the paper's format gives is judged as the bare answer would be."""
    found = extract(text)
    assert found.rule == rule
    assert ck.check(found.answer, gold).equal is equal
    assert checker.check(found.answer, gold).equal is equal


LONG_TEXTS = [
    "\\boxed{" * 3000,
    "{" * 20000,
    "1," * 10000,
    "The answer is " * 2000,
    "#### " * 5000,
    "x" * 100000,
    "." * 100000,
    "$" * 100000,
    "\\text{" * 10000 + "}" * 10000,
    "1 " * 50000,
    "1 dollars" * 10000,
    "<atok>" * 20000,
    "<atok> [answer] " * 10000,
    "</ " * 50000,
]


def test_extract_and_normalize_are_linear_time_on_long_inputs():
    for text in LONG_TEXTS:
        start = time.monotonic()
        extract(text)
        normalize(text)
        assert time.monotonic() - start < 1.0, text[:30]


def test_extract_and_normalize_are_linear_time_on_long_runs_of_spaces():
    # Answers with long runs of spaces: the 'I hope it is correct' strip once scanned a run once per space, and the
    # 'and'-list rule of normalize() (run in the caller's process) took 220 s on 100k spaces.
    for text in (
        "<atok>" + " " * 100000 + "</",
        "<atok> 5" + " " * 100000 + "x </atok>",
        "The answer is 5" + " " * 100000,
        "5" + " " * 100000 + "x",
    ):
        start = time.monotonic()
        normalize(extract(text).answer or text)
        assert time.monotonic() - start < 1.0, text[:30]


def test_normalize_rules():
    assert normalize("$\\boxed{18}$.") == "18"
    assert normalize("\\text{18 dollars}") == "18"
    assert normalize("1\\,000\\,000") == "1000000"
    assert normalize("1 1/2") == "\\frac{3}{2}"
    assert normalize("-2 3/4") == "-\\frac{11}{4}"
    assert normalize("1.5e3") == "1.5\\times10^{3}"
    assert normalize("2 and 3") == "2,3"
    assert normalize("\\pi r") == "\\pi r"
    assert normalize("1 2") == "1 2"
    assert normalize("x + 1") == "x+1"
    assert normalize("5 x") == "5 x"  # one-letter words are not units
    assert normalize("5 million") == "5 million"


# --------------------------------------------------------------------------------------------------
# The hard limit, the worker wiring, determinism
# --------------------------------------------------------------------------------------------------

ADVERSARIAL = {
    "10k_chars_sum": "1+" * 5000 + "1",
    "10k_digits": "9" * 10_000,
    "10k_text": "lorem ipsum " * 900,
    "deep_braces": "{" * 3000 + "1" + "}" * 3000,
    "deep_parens": "(" * 2000 + "1" + ")" * 2000,
    "deep_fracs": "\\frac{" * 200 + "1" + "}{2}" * 200,
    "deep_sqrt": "\\sqrt{" * 500 + "2" + "}" * 500,
    "power_tower": "10^{10^{10}}",
    "power_tower_2": "2^{2^{2^{2^{2^{2}}}}}",
    "factorial": "100000!",
    "malformed_frac": "\\frac{1}{",
    "malformed_mix": "\\left( \\right] }{ \\sqrt",
    "malformed_matrix": "\\begin{pmatrix} 1 & 2 \\\\",
    "malformed_dollars": "$$$$\\\\\\",
}


@pytest.mark.slow
def test_adversarial_inputs_return_within_the_bound():
    limit = 0.5
    with Checker(timeout=limit) as ck:
        ck.start()
        pairs = [(text, "5") for text in ADVERSARIAL.values()]
        pairs += [("5", ADVERSARIAL[name]) for name in ("power_tower", "deep_braces", "10k_chars_sum")]
        for pred, gold in pairs:
            start = time.monotonic()
            verdict = ck.check(pred, gold)
            elapsed = time.monotonic() - start
            # the limit, plus slack for the kill and for the restart a previous timeout triggered
            assert elapsed < limit + 3.0, (pred[:40], gold[:40], elapsed, verdict)
            assert verdict.equal is False
            assert verdict.reason in {"different", "timeout", "crashed"}
        assert ck.stats["timeouts"] >= 2  # the power towers at least
        # the checker still works afterwards
        assert ck.check("\\frac{1}{2}", "0.5") == Verdict(True, "equivalent")


def test_timeout_is_counted_and_the_worker_restarts():
    with Checker(timeout=0.5) as ck:
        ck.start()
        before = ck.stats
        start = time.monotonic()
        verdict = ck.check("10^{10^{10}}", "7")
        assert time.monotonic() - start < 1.5
        assert verdict == Verdict(False, "timeout")
        after = ck.stats
        assert after["timeouts"] == before["timeouts"] + 1
        assert after["worker_starts"] == before["worker_starts"] + 1
        assert ck.check("\\frac{1}{2}", "0.5") == Verdict(True, "equivalent")


def test_fractional_timeouts_reach_the_worker_and_work():
    """math-verify 0.9 takes whole seconds only: a float there silently made every comparison False.
    Our limit is enforced by the parent, so fractional limits must give real verdicts."""
    with Checker(timeout=0.75, shortcut=False) as ck:
        assert ck.check("1/2", "0.5") == Verdict(True, "equivalent")
        assert ck.check("\\frac{1}{2}", "\\frac{1}{2}") == Verdict(True, "equivalent")
        assert ck.check("\\sqrt{8}", "2\\sqrt{2}", timeout=1.25) == Verdict(True, "equivalent")
        assert ck.check("3", "4", timeout=2.5) == Verdict(False, "different")
    assert is_equiv("0.5", "\\dfrac{1}{2}", timeout=0.9)


def test_the_math_verify_float_trap_exists():
    """Why the worker never lets math-verify time itself (pinned 0.9.0): its limit is a SIGALRM of
    whole seconds, and a float there makes every comparison quietly False."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    assert verify(parse("$0.5$"), parse("$\\frac{1}{2}$"))
    assert not verify(parse("$0.5$"), parse("$\\frac{1}{2}$"), timeout_seconds=0.5)


def test_the_worker_comparison_never_arms_a_math_verify_timeout(monkeypatch):
    """Our side of the trap above: the code the worker runs passes math-verify no timeout at all
    (``parsing_timeout=None``, ``timeout_seconds=None``), so no SIGALRM is ever set and no float
    can reach ``signal.alarm``. With the signal calls forbidden, comparisons must still give real
    verdicts; a timeout handed to math-verify would make them False (its errors are swallowed)."""
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    armed = []

    def forbidden(*args):
        armed.append(args)
        raise AssertionError("math-verify armed a signal timeout")

    equivalence._mv_parse.cache_clear()  # parse afresh, under the patch
    monkeypatch.setattr(signal, "alarm", forbidden)
    monkeypatch.setattr(signal, "signal", forbidden)
    try:
        assert equivalence._equivalent_normalized("0.5", "\\frac{1}{2}")
        assert equivalence._equivalent_normalized("x=3", "3")
        assert not equivalence._equivalent_normalized("3", "4")
    finally:
        monkeypatch.undo()
        equivalence._mv_parse.cache_clear()
    assert armed == []


def test_identical_shortcut_and_worker_agree():
    with Checker(shortcut=False) as slow:
        for _, pred, gold, expected in CASES[:40]:
            assert slow.is_equiv(pred, gold) is expected, (pred, gold)


def test_a_killed_worker_is_replaced():
    with Checker() as ck:
        ck.start()
        os.kill(ck._proc.pid, signal.SIGKILL)
        ck._proc.wait()
        assert ck.check("2x+2", "2(x+1)") == Verdict(True, "equivalent")
        assert ck.stats["worker_starts"] == 2


def test_worker_killed_mid_comparison_gives_crashed():
    with Checker(timeout=10.0) as ck:
        ck.start()
        import threading

        timer = threading.Timer(0.5, lambda: os.kill(ck._proc.pid, signal.SIGKILL))
        timer.start()
        verdict = ck.check("2^{2^{2^{2^{2^{2}}}}}", "3")
        timer.join()
        assert verdict == Verdict(False, "crashed")
        assert ck.stats["crashes"] == 1
        assert ck.check("1", "1.0") == Verdict(True, "equivalent")


def test_module_level_functions_and_stats():
    assert is_equiv("\\frac{6}{4}", "1.5")
    assert checker.check(None, "1") == Verdict(False, "no_answer")
    assert checker.check("  ", "1") == Verdict(False, "no_answer")
    assert checker.check("7" * (checker.MAX_ANSWER_CHARS + 1), "7") == Verdict(False, "too_long")
    assert checker.check("x=3", "x = 3") == Verdict(True, "identical")
    s = checker.stats()
    assert s["calls"] >= 5 and set(s) == {"calls", "identical", "compared", "timeouts", "crashes", "worker_starts"}
    assert not Verdict(False, "different") and Verdict(True, "identical")


# --------------------------------------------------------------------------------------------------
# Input errors name the argument and what is allowed
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: is_equiv(5, "5"), TypeError, "pred"),
        (lambda: is_equiv("5", None), TypeError, "gold must be a str"),
        (lambda: is_equiv("5", ""), ValueError, "gold must be a non-empty"),
        (lambda: is_equiv("5", "5", timeout=-1), ValueError, "timeout must be a positive"),
        (lambda: is_equiv("5", "5", timeout=0), ValueError, "timeout must be a positive"),
        (lambda: is_equiv("5", "5", timeout=float("nan")), ValueError, "finite"),
        (lambda: is_equiv("5", "5", timeout="1"), TypeError, "timeout must be a positive number"),
        (lambda: is_equiv("5", "5", timeout=True), TypeError, "timeout"),
        (lambda: Checker(timeout=0), ValueError, "Checker: timeout"),
        (lambda: Checker(shortcut="yes"), TypeError, "shortcut must be True or False"),
        (lambda: extract(None), TypeError, "text must be a str"),
        (lambda: extract_answer(b"5"), TypeError, "text must be a str"),
        (lambda: normalize(5), TypeError, "answer must be a str"),
    ],
)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


# heavy: torch, transformers, lm_eval, sympy and math-verify (the worker's business); forbidden: tasks and adapters
HEAVY_OR_FORBIDDEN = (
    "torch",
    "transformers",
    "lm_eval",
    "sympy",
    "math_verify",
    "latex2sympy2_extended",
    "tasks",
    "model_adapters",
    "unlock_eval.tasks",
    "unlock_eval.model_adapters",
)


def test_importing_the_checker_loads_no_heavy_or_forbidden_modules(tmp_path):
    """What `import unlock_eval.checker` (package __init__ included) adds to sys.modules, in a fresh
    interpreter with -P and a temporary cwd: the package comes from the environment (the installed
    one, or $PYTHONPATH), not from a checkout that happens to be the current directory."""
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"  # the start-up hook (model_adapters.registration) is loaded already
        "import unlock_eval.checker\n"
        f"bad = [n for n in {HEAVY_OR_FORBIDDEN!r} if n in set(sys.modules) - before]\n"
        "print(json.dumps([unlock_eval.checker.__file__, bad]))\n"
    )
    proc = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    imported_from, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing unlock_eval.checker ({imported_from}) loaded {loaded}"
