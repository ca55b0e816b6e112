"""Answer equivalence: the hand-written :func:`normalize` and the math-verify comparison run in the worker.

Two halves:

* :func:`normalize` (runs in the caller's process): a small, hand-written set of string rewrites for
  things math-verify gets wrong or that make a string compare fail: wrappers (``$``, ``\\boxed``),
  Unicode symbols, digit-group separators other than the comma, plain-text units after a number,
  mixed numbers ``1 1/2``, ``1e3``, and ``and`` in answer lists. Each rule is commented where it is
  applied.
* :func:`_equivalent_normalized` (runs only inside the worker process, see ``_worker_main.py``):
  math-verify 0.9 (``parse`` + ``verify``) on top of sympy, with no time limit of its own (its
  signal-based timeouts are switched off: ``parsing_timeout=None``, ``timeout_seconds=None``; the
  parent's deadline is the only clock). Two departures from plain math-verify: a predicted *general*
  equation is not reduced to its right-hand side (:func:`_drop_general_equations`), and a bare
  ``70,110`` is compared under both readings (:func:`_readings`).

sympy and math_verify are imported inside the functions only, so importing this module is cheap.
"""

from __future__ import annotations

import re
from functools import lru_cache

from unlock_eval.checker.extract import _matching_braces, _require_str

# --------------------------------------------------------------------------------------------------
# Normalisation (hand-written, deliberately small; runs in the caller's process)
# --------------------------------------------------------------------------------------------------

# Unicode a model may print instead of LaTeX.
_UNICODE = {"−": "-", "–": "-", "π": "\\pi", "∞": "\\infty", "°": "^\\circ", "√": "\\sqrt", "×": "\\times"}
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_WHOLE_COMMAND_RE = re.compile(r"^\\(?:boxed|fbox|text|textbf|mathrm|mbox)\s*\{")
# 1\,000  1{,}000  1\ 000  1 000 (thin-space styles): unambiguous digit-group separators.
_DIGIT_GROUPS_RE = re.compile(r"(?<![\d.])\d{1,3}(?:(?:\\,|\{,\}|\\ |\\;|\s)\d{3})+(?![\d])")
_GROUP_SEP_RE = re.compile(r"\\,|\{,\}|\\ |\\;|\s")
# '18 dollars', '5 cm^2', '$3.50 per pound': a plain number followed only by unit words
# (each >= 2 letters, so '5 x' or '5x' are left alone).
# Words that change the value ('5 million', '3 pi') are never units.
_NOT_UNITS = r"(?!(?:pi|sqrt|infty|infinity|hundred|thousand|million|billion|trillion|dozen|squared|cubed)\b)"
_NUMBER_UNITS_RE = re.compile(
    r"(?P<num>[-+]?\\?\$?\s*\d[\d,]*(?:\.\d+)?)"
    rf"(?:\s+{_NOT_UNITS}[A-Za-z]{{2,}})+(?:\^\{{?[23]\}}?)?",
    re.IGNORECASE,
)
_MIXED_NUMBER_RE = re.compile(r"(?P<sign>-?)(?P<whole>\d+)\s+(?P<num>\d+)\s*/\s*(?P<den>\d+)")
_SCIENTIFIC_RE = re.compile(r"(?P<mant>[-+]?\d+(?:\.\d+)?)[eE](?P<exp>[-+]?\d+)")
# (?<!\s): a match starts where a whitespace run starts (the leftmost match anyway), which keeps this linear on
# long runs of spaces instead of retrying from every position inside them
_AND_RE = re.compile(r"(?<!\s)\s*(?:,\s*)?(?:\\text\{\s*and\s*\}|\band\b)\s*")
# Whitespace is dropped, except that one space stays between two letters/digits: '1 2' must not
# become '12', nor '\pi r' the unknown command '\pir'.
_SPACE_RE = re.compile(r"\s+")


def _squeeze_spaces(s: str) -> str:
    def repl(m: re.Match[str]) -> str:
        before, after = s[m.start() - 1 : m.start()], s[m.end() : m.end() + 1]
        return " " if before.isalnum() and after.isalnum() else ""

    return _SPACE_RE.sub(repl, s)


def _strip_wrappers(s: str) -> str:
    for _ in range(8):  # wrappers nest a few levels at most; a fixed bound keeps this linear
        before = s = s.strip()
        if s.endswith(".") and not s.endswith("\\."):
            s = s[:-1].rstrip()
        for left, right in _WRAPPERS:
            if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : -len(right)]
                break
        m = _WHOLE_COMMAND_RE.match(s)
        if m and _matching_braces(s).get(m.end() - 1) == len(s) - 1:
            s = s[m.end() : -1]
        if s == before:
            break
    return s.strip()


def normalize(answer: str) -> str:
    """The hand-written part of the checker: cheap string rewrites applied before math-verify.

    Each rewrite fixes something math-verify (0.9) gets wrong or that would defeat a plain string
    compare; everything else is left to math-verify. Two answers with equal ``normalize`` output
    are equal without further work.
    """
    _require_str(answer, "normalize", "answer")
    s = answer
    for uni, tex in _UNICODE.items():  # Unicode symbols -> LaTeX
        s = s.replace(uni, tex)
    # '$x$', '\(x\)', '\boxed{x}', '\text{x}' around the whole answer, and a trailing period.
    s = _strip_wrappers(s)
    # Digit groups separated by '\,', '{,}', '\ ' or spaces: math-verify reads '1\,000' as 1*0 = 0.
    s = _DIGIT_GROUPS_RE.sub(lambda m: _GROUP_SEP_RE.sub("", m.group(0)), s)
    # '18 dollars' -> '18': math-verify only knows units inside LaTeX (\text{ dollars}).
    m = _NUMBER_UNITS_RE.fullmatch(s)
    if m:
        s = m.group("num").replace(" ", "")
    # '1 1/2' -> '\frac{3}{2}': math-verify reads the plain-text mixed number as 1.
    m = _MIXED_NUMBER_RE.fullmatch(s)
    if m:
        den = int(m.group("den"))
        if den:
            num = int(m.group("whole")) * den + int(m.group("num"))
            s = f"{m.group('sign')}\\frac{{{num}}}{{{den}}}"
    # '1.5e3' -> '1.5\times10^{3}': math-verify reads 'e' as Euler's number.
    m = _SCIENTIFIC_RE.fullmatch(s)
    if m:
        s = f"{m.group('mant')}\\times10^{{{m.group('exp')}}}"
    # '2 and 3' -> '2, 3': an answer list written in words.
    s = _AND_RE.sub(", ", s)
    return _squeeze_spaces(s.strip())


# --------------------------------------------------------------------------------------------------
# The comparison proper (runs inside the worker process only)
# --------------------------------------------------------------------------------------------------

# A bare '70,110' (no brackets): thousands separator or a two-element answer list? MATH uses both.
_AMBIGUOUS_COMMAS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+")


def _readings(answer: str) -> list[str]:
    if _AMBIGUOUS_COMMAS_RE.fullmatch(answer):
        return [answer.replace(",", ""), answer.replace(",", ", ")]
    return [answer]


@lru_cache(maxsize=8192)
def _mv_parse(answer: str) -> tuple:
    """math-verify's parse of one answer. Parsing (ANTLR) is most of a comparison's cost and a pure
    function of the string, so the worker keeps recent results: gold answers recur."""
    from math_verify import parse

    # Wrapping in \boxed makes math-verify read the whole string as one LaTeX answer (with its own
    # LaTeX normalisation: units, \text, \left/\right, ...). parsing_timeout=None: see module doc.
    return tuple(parse("\\boxed{" + answer + "}", parsing_timeout=None))


def _drop_general_equations(pred: list, gold: tuple) -> list:
    """Keep 'x = 3' but drop '11x+6y+5z+86 = 0' as a candidate when the gold answer is no equation.

    math-verify compares the right-hand side of any predicted equation with a non-equation gold
    answer, so the plane '11x+6y+5z+86=0' would equal the gold answer '0'. Assignments (only symbols
    on the left, like 'x = 3' or 'k = 1/2') keep that convenience.
    """
    from math_verify.grader import is_assignment_relation, is_equation

    if any(is_equation(g) for g in gold if not isinstance(g, str)):
        return pred
    return [p for p in pred if isinstance(p, str) or not is_equation(p) or is_assignment_relation(p)]


def _equivalent_normalized(pred: str, gold: str) -> bool:
    """True when math-verify judges ``pred`` equal to ``gold`` (both already normalised). Unbounded."""
    from math_verify import verify

    for gold_reading in _readings(gold):
        gold_parsed = _mv_parse(gold_reading)
        if not gold_parsed:
            continue
        for pred_reading in _readings(pred):
            pred_parsed = _drop_general_equations(list(_mv_parse(pred_reading)), gold_parsed)
            if pred_parsed and verify(list(gold_parsed), pred_parsed, timeout_seconds=None):
                return True
    return False


def _worker_warm_up() -> None:
    """Import and exercise the lazy parts of sympy/math-verify once, so no first call pays for it."""
    import logging

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)
    for pred, gold in (("\\frac{1}{2}", "0.5"), ("(x+1)^2", "x^2+2x+1"), ("[1,2)", "(1,2]"), ("x=3", "3")):
        _equivalent_normalized(pred, gold)
