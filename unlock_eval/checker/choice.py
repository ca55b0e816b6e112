"""Multiple-choice judging: the option letter an answer names (:func:`choice_letter`) and the verdict of an answer
against a gold letter and its option's content (:func:`check_choice`), shared by the SAT-Math scorer and the
report's chance level."""

from __future__ import annotations

import re

from unlock_eval.checker.worker import DEFAULT_TIMEOUT, Verdict, check

_LETTER_RE = re.compile(r"^\(?([A-G])\)?(?:$|[\s:.,)])")


def choice_letter(answer: str | None) -> str | None:
    """'B', '(B)', '(B) 10', '\\text{(B)}', 'B.' -> 'B'; anything else -> None."""
    if answer is None:
        return None
    stripped = re.sub(r"\\text(?:bf)?\{([^{}]*)\}", r"\1", answer).replace("$", "").replace("*", "").strip()
    m = _LETTER_RE.match(stripped)
    return m.group(1) if m else None


def check_choice(answer: str | None, letter: str, option: str, timeout: float = DEFAULT_TIMEOUT) -> Verdict:
    """Correct when ``answer`` names the gold ``letter``, or names no letter and is mathematically equal to the
    gold ``option``'s content (e.g. '10' for '(D)10'; the letter itself when the option is empty)."""
    named = choice_letter(answer)
    if named is not None:
        return Verdict(named == letter, "identical" if named == letter else "different")
    return check(answer, option or letter, timeout)
