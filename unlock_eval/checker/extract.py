"""Answer extraction: find the final answer in a model's text (:func:`extract`, :func:`extract_answer`).

Rules, in priority order (:data:`RULES`; the first one that finds an answer wins):

``atok``          the paper's format, ``The final answer is <atok> x </atok>.``: the text after the last
                  ``<atok>`` up to ``</atok>`` (or a closing tag cut off at the very end of the text), else
                  up to the end of that line (the form lm-eval leaves when it stops at ``</atok>``); an
                  empty answer or the echoed placeholder ``[answer]`` falls back to the ``<atok>`` before,
                  then to the rules below (which ignore such a leftover ``<atok> [answer]`` too)
``boxed``         the last complete ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces; ``\\boxed 5`` too)
``gsm8k``         the last ``#### N`` line (GSM8K's answer marker)
``final_answer``  the last ``Final Answer: ...`` (Minerva: ``Final Answer: The final answer is $x$.``)
``answer_is``     the last ``the answer is ...`` / ``the final answer is ...`` / ``final answer is ...``
``last_number``   fallback: the last number in the text (integer, decimal, ``a/b``, ``\\frac{a}{b}``)

:data:`STRICT_RULES` are the marker rules (all but ``last_number``): strict accuracy counts only their answers.

Also home of two small helpers the other checker modules share: argument type checks
(:func:`_require_str`) and LaTeX brace matching (:func:`_matching_braces`). Only the standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Extraction rules in priority order (the first one that finds an answer wins).
RULES = ("atok", "boxed", "gsm8k", "final_answer", "answer_is", "last_number")
#: The rules that count for *strict* accuracy: each reads a span the model itself marked as its final answer
#: (``<atok>``, ``\\boxed{}``, ``####``, ``Final Answer:``, ``(the) (final) answer is``). The rest are fallbacks
#: that guess from unmarked text: ``last_number`` here, ``choice`` (a bare option letter) in the multiple-choice
#: scorer; a counting list ("Friend 1: ... Friend 6:") hits a gold 6 through ``last_number`` by luck.
STRICT_RULES = frozenset(("atok", "boxed", "gsm8k", "final_answer", "answer_is"))


@dataclass(frozen=True)
class Extraction:
    """The final answer found in a text, and the rule (one of :data:`RULES`) that found it.

    ``answer`` and ``rule`` are both ``None`` when no rule found anything.
    """

    answer: str | None
    rule: str | None

    @property
    def found(self) -> bool:
        return self.answer is not None


def _require_str(value: object, func: str, arg: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{func}: {arg} must be a str, got {type(value).__name__}")
    return value


def _matching_braces(text: str) -> dict[int, int]:
    """Map the index of every '{' to the index of its matching '}' in one linear pass.

    Escaped braces (``\\{``, ``\\}``: literal braces in LaTeX, e.g. sets or ``\\left\\{``) are skipped,
    so an unpaired ``\\left\\{ ... \\right.`` does not unbalance the count.
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    backslashes = 0
    for i, ch in enumerate(text):
        if ch == "\\":
            backslashes += 1
            continue
        escaped = backslashes % 2 == 1
        backslashes = 0
        if escaped:
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
    return pairs


_BOXED_RE = re.compile(r"\\(?:boxed|fbox)(?:\s*(\{)|\s+([^\s${}]+))")


def _last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}``/``\\fbox{...}`` (or ``\\boxed 5``), else None.

    A box cut off by the end of the generation is skipped in favour of an earlier, complete one.
    An empty box gives '' (the caller treats that as no answer from this rule).
    """
    matches = list(_BOXED_RE.finditer(text))
    if not matches:
        return None
    braces = _matching_braces(text)
    for m in reversed(matches):
        if m.group(1) is None:
            return m.group(2).strip()
        close_idx = braces.get(m.start(1))
        if close_idx is not None:
            return text[m.start(1) + 1 : close_idx].strip()
    return None


# Markers; the answer is the rest of the line after the *last* marker.
_GSM8K_RE = re.compile(r"####[ \t]*")
_FINAL_ANSWER_RE = re.compile(r"final[ \t]+answer[ \t]*[:：][ \t]*", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(
    r"\b(?:the[ \t]+(?:final[ \t]+)?|final[ \t]+)answer[ \t]+is[ \t]*[:：]?[ \t]*", re.IGNORECASE
)
# (?<!\s): start only where a whitespace run starts, so a long run is scanned once, not once per space.
_HOPE_RE = re.compile(r"(?<!\s)\s*I hope it is correct.*$", re.IGNORECASE)
_LEADING_FINAL_RE = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s+is\s*[:：]?\s*", re.IGNORECASE)
_DOLLAR_MATH_RE = re.compile(r"\$\$?([^$]+?)\$\$?")
_SENTENCE_END_RE = re.compile(r"\.(?!\d)(?:\s|$)")

# A number: optional sign, digits with optional ',ddd' groups, optional decimals, optional '/d'
# (a/b), or a LaTeX fraction of integers. The look-behind stops 'x2' or '1.2.3' fragments.
_NUMBER_RE = re.compile(
    r"-?\\[dt]?frac\{-?\d+\}\{\d+\}"
    r"|(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?![\d.]))?"
)


def _after_last_marker(marker: re.Pattern[str], text: str) -> str | None:
    """The rest of the line after the last match of ``marker``, or None when it never matches."""
    last = next(reversed(list(marker.finditer(text))), None)
    if last is None:
        return None
    end = text.find("\n", last.end())
    return text[last.end() : end if end >= 0 else len(text)]


# The paper's answer tags: '<atok>', '< ATOK >'; '</atok>', and a closing tag cut off at the very
# end of a generation ('</ato', '</', '<').
_ATOK_OPEN_RE = re.compile(r"<[ \t]*atok[ \t]*>", re.IGNORECASE)
_ATOK_CLOSE_RE = re.compile(r"<[ \t]*/[ \t]*atok[ \t]*>", re.IGNORECASE)
_ATOK_CUT_CLOSE_RE = re.compile(r"<[ \t]*(?:/[ \t]*(?:a(?:t(?:o(?:k[ \t]*)?)?)?)?)?\s*\Z", re.IGNORECASE)
_ATOK_PLACEHOLDER = "[answer]"
_ATOK_TAG_RE = re.compile(r"<[ \t]*/?[ \t]*atok[ \t]*>", re.IGNORECASE)
_WHOLE_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _atok_answer(text: str) -> str | None:
    """The answer inside the last usable ``<atok> ... </atok>`` (see the module docstring), else None.

    Each occurrence is read up to its ``</atok>`` if one comes before the next ``<atok>``, else to the
    end of its line (minus a closing tag cut off at the very end of the text). Empty answers and the
    echoed placeholder ``[answer]`` are skipped in favour of the occurrence before. The pieces read
    never overlap, so this stays linear.
    """
    opens = list(_ATOK_OPEN_RE.finditer(text))
    stop = len(text)
    for m in reversed(opens):
        close = _ATOK_CLOSE_RE.search(text, m.end(), stop)
        if close is not None:
            phrase = text[m.end() : close.start()]
        else:
            eol = text.find("\n", m.end(), stop)
            phrase = text[m.end() : eol if eol >= 0 else stop]
            if eol < 0 and stop == len(text):
                phrase = _ATOK_CUT_CLOSE_RE.sub("", phrase)
        stop = m.start()
        answer = _clean_phrase(phrase)
        if answer is not None:
            answer = _unbox(answer)
        if answer and answer.replace(" ", "").lower() != _ATOK_PLACEHOLDER:
            return answer
    return None


def _is_atok_leftover(answer: str) -> bool:
    """True for what another rule finds in an unusable ``<atok>`` line: ``<atok>``, ``<atok> [answer]``.

    ('The final answer is <atok> [answer] ' gives the ``answer_is`` rule '<atok> [answer]'.) Only an
    answer holding an ``<atok>`` tag can be a leftover.
    """
    if not _ATOK_OPEN_RE.search(answer):
        return False
    rest = _ATOK_CUT_CLOSE_RE.sub("", _ATOK_TAG_RE.sub("", answer))
    return rest.replace(" ", "").lower() in ("", _ATOK_PLACEHOLDER)


def _unbox(answer: str) -> str:
    """'\\boxed{x}' -> 'x' when the box wraps the whole answer; anything else unchanged."""
    m = _WHOLE_BOX_RE.match(answer)
    if m and _matching_braces(answer).get(m.end() - 1) == len(answer) - 1:
        return answer[m.end() : -1].strip()
    return answer


def _clean_phrase(phrase: str) -> str | None:
    """Turn the rest of an 'answer is ...' line into an answer string.

    Drops Minerva's 'I hope it is correct.', markdown bold, a repeated 'the final answer is';
    takes the first ``$...$`` span if there is one, otherwise the text up to the end of the
    sentence (a '.' that is not a decimal point).
    """
    phrase = _HOPE_RE.sub("", phrase).replace("**", "").strip()
    phrase = _LEADING_FINAL_RE.sub("", phrase)
    m = _DOLLAR_MATH_RE.search(phrase)
    if m:
        phrase = m.group(1)
    else:
        end = _SENTENCE_END_RE.search(phrase)
        if end:
            phrase = phrase[: end.start()]
    phrase = phrase.strip().rstrip(".,;:").strip()
    return phrase or None


def extract(text: str) -> Extraction:
    """Find the final answer in ``text``; see the module docstring for the rules and their order.

    Runs in linear time (one brace-matching pass, non-backtracking regexes), so it needs no timeout.
    """
    _require_str(text, "extract", "text")
    atok = _atok_answer(text)
    if atok is not None:
        return Extraction(atok, "atok")
    boxed = _last_boxed(text)
    if boxed:
        return Extraction(boxed, "boxed")
    for rule, regex in (
        ("gsm8k", _GSM8K_RE),
        ("final_answer", _FINAL_ANSWER_RE),
        ("answer_is", _ANSWER_IS_RE),
    ):
        phrase = _after_last_marker(regex, text)
        if phrase is not None:
            answer = _clean_phrase(phrase)
            if answer is not None and not _is_atok_leftover(answer):
                return Extraction(answer, rule)
    last = None
    for m in _NUMBER_RE.finditer(text):
        last = m
    if last is not None:
        return Extraction(last.group(0).strip(), "last_number")
    return Extraction(None, None)


def extract_answer(text: str) -> str | None:
    """The final answer in ``text`` (see :func:`extract`), or None when there is none."""
    return extract(text).answer
