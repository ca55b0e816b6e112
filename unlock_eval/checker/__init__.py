"""Math answer checking: find the final answer in a model's text and judge it against a gold answer.

The public API, re-exported from its modules, one job each:

1. **Extraction** (:mod:`.extract`) -- :func:`extract` returns an :class:`Extraction` (the answer
   string and the rule that found it); :func:`extract_answer` returns just the string. Rules, first
   match wins, are listed in :data:`RULES`: ``atok`` (the paper's ``The final answer is <atok> x
   </atok>``, also unclosed, as lm-eval leaves it when it stops at ``</atok>``), ``boxed``, ``gsm8k``
   (``#### N``), ``final_answer`` (Minerva), ``answer_is`` (``the answer is``, ``(the) final answer
   is``), and the ``last_number`` fallback. :data:`STRICT_RULES` are the marker rules (all but
   ``last_number``): strict accuracy counts only their answers.

2. **Equivalence** (:mod:`.equivalence`) -- a small hand-written :func:`normalize` (wrappers, Unicode,
   digit-group separators, plain-text units, mixed numbers, ``1e3``, ``and`` in lists), then
   math-verify 0.9 on top of sympy for everything else (fractions, radicals, intervals, sets, tuples,
   matrices, ``x=3`` vs ``3``, symbolic expressions). Two deliberate departures from plain
   math-verify, both to avoid false positives/negatives seen on MATH: a predicted *general* equation
   (``11x+6y+5z+86=0``) is not reduced to its right-hand side, and a bare ``70,110`` counts as equal
   under either reading (70110, or the list 70, 110). ``is_equiv(pred, gold)`` is not symmetric: the
   gold answer decides the expected form (math-verify's convention).

3. **A hard time limit** (:mod:`.worker`) -- :func:`check` (a :class:`Verdict` with one of
   :data:`REASONS`), :func:`is_equiv` (``bool``) and :class:`Checker` run every comparison in a
   persistent worker process (entry script ``_worker_main.py``) that is killed and restarted when a
   comparison runs past its limit (the call then returns ``False``, reason ``"timeout"``);
   ``10^{10^{10}}``, for instance, makes sympy compute the integer in C, and only the kill stops
   that. math-verify's own signal-based timeouts are switched off in the worker (they take whole
   seconds only, and a float there made every comparison return False without an error); the
   parent's deadline is the only clock. Same inputs, same result, whatever was compared before,
   except that a comparison that hits the limit returns False.

Multiple choice (:mod:`.choice`): :func:`choice_letter` and :func:`check_choice` (letter, else the option's
value).

The paper's reading (:mod:`.reference`): :func:`extract_reference` reads the answer the way the paper's official code
does, per data set (:data:`REFERENCE_DATASETS`), for the tasks' ``acc_reference``, judged by :func:`check` within
:data:`REFERENCE_TIMEOUT` (the reference's 3 s); :func:`reference_strip` is its clean-up of an answer.

Only stdlib, sympy, math_verify and latex2sympy2_extended are used, and the heavy ones only inside
the worker: importing this package is cheap. It never imports lm_eval, tasks or adapters.
"""

from unlock_eval.checker.choice import check_choice, choice_letter
from unlock_eval.checker.equivalence import normalize
from unlock_eval.checker.extract import RULES, STRICT_RULES, Extraction, extract, extract_answer
from unlock_eval.checker.reference import DATASETS as REFERENCE_DATASETS
from unlock_eval.checker.reference import REFERENCE_TIMEOUT, extract_reference, reference_strip
from unlock_eval.checker.worker import (
    DEFAULT_TIMEOUT,
    MAX_ANSWER_CHARS,
    REASONS,
    WORKER_MEMORY_LIMIT_BYTES,
    WORKER_STARTUP_TIMEOUT,
    Checker,
    Verdict,
    check,
    is_equiv,
    stats,
)

__all__ = [
    "RULES",
    "STRICT_RULES",
    "REASONS",
    "REFERENCE_DATASETS",
    "REFERENCE_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "MAX_ANSWER_CHARS",
    "WORKER_MEMORY_LIMIT_BYTES",
    "WORKER_STARTUP_TIMEOUT",
    "Extraction",
    "Verdict",
    "Checker",
    "extract",
    "extract_answer",
    "extract_reference",
    "reference_strip",
    "normalize",
    "check",
    "check_choice",
    "choice_letter",
    "is_equiv",
    "stats",
]
