"""The paper's answer reading: :func:`extract_reference` reads a generation the way its official code does.

Written from reading that code (github.com/rishabbala/Steering-Vector-Transfer: ``base_class.py``
``generate_response`` -> ``parser.py`` ``run_execute`` / ``extract_answer`` -> ``evaluate.py`` ``evaluate``), not
copied from it. The comparison is not reproduced: the tasks judge what this module reads with our own checker
(``unlock_eval.checker.check``) under the reference's limit, :data:`REFERENCE_TIMEOUT` (3 s: ``evaluate.py`` runs
each ``math_equal`` in a pebble pool with ``timeout=3``), so ``acc_reference`` differs from ``acc`` only in how the
answer is read.

Every data set (``base_class.py``, ``parser.py`` ``extract_answer``):

- the text is cut at the first occurrence of each of the reference's stop strings (:data:`STOP_STRINGS`, the
  ``stop_words`` of ``create_response_prompt_and_format``; our tasks generate with the same ``until`` list) and
  stripped; an empty text reads as no answer (``run_execute``); ``ки`` is dropped and the text is cut before
  ``I hope``.

``gsm8k`` and ``arith`` (``extract_answer``'s second branch, then ``extract_gsm8k``); ``math`` and ``math500`` (the
same branch, then ``extract_math``); ``agieval_sat_math`` (see below):

- *pieces* (:func:`_pieces`): the text is split on a list of markers (``boxed``, ``<atok>``, ``atok``, ``answer``,
  ``Final Answer``, ``choice is``, ``choice:``, ``####``, ``Therefore``, ``Thus``; per piece the first one in that
  order that occurs, repeated until no piece holds a marker); pieces that are empty or a filler word (``the``,
  ``is``, ``final``, ...) are dropped, and the rest are tried **shortest first** (a text with no marker is one
  piece). So ``So x = 7. Thus the answer is $\\boxed{\\frac{1}{2}}$.`` reads ``7`` for math: ``So x = 7`` is
  shorter than the boxed piece.
- gsm8k/arith, per piece: the words ``the final answer therefore is so thus``, brackets, ``atok`` tags and line
  breaks are deleted (anywhere, inside words too); the text after the last ``=``; the first ``$...$`` span;
  :func:`reference_strip` and the unit clean-up; if that holds a space, the first space-separated word of the piece
  instead; cut before the first punctuation mark followed by a letter (``\\frac`` cuts to nothing). Without a digit
  left, the last number of the piece (commas removed). The first piece that gives something wins.
- math/math500, per piece: the same deletions, last ``=``, ``$...$``, ``\\boxed{}`` content, :func:`reference_strip`
  and unit clean-up; an answer with no operator (``+-*/=\\``) that is exactly one number after removing spaces
  becomes that number; ``[] ;:.,`` are trimmed; the first piece that is not empty or only punctuation wins. If none
  does: the last number of the whole text, cleaned the same way and cut at its first space; without a number, the
  stand-alone letter of the multiple-choice reading below (``extract_math``'s last resort).
- ``agieval_sat_math``: the reference evaluates no SAT-Math (``data_loader.py`` has no loader for it and
  ``extract_answer`` no branch: the name would end in an error). We apply the reading it gives its own four-option
  data sets (``mmlu_stem``, ``arc_c``, ``gpqa``: ``extract_multi_choice_answer``): per piece, punctuation ``[],.:``
  deleted, the first stand-alone letter A-D (either case) when the text holds a marker or is a single piece; else
  the option whose text (lower case, no spaces) occurs last in the piece. The letter is returned upper case (the
  reference compares lower-cased), so an analogy, not a rule the paper applied.

``agieval_math`` (``extract_answer``'s first branch):

- the text is split on ``<atok>``, ``final answer is``, ``answer is``, ``answer to the question is``, ``Final
  Answer``, ``choice is``, ``choice:``, ``####``, each split listing its parts last first, until nothing changes.
- per part: ``\\boxed{}`` content; at ``.`` + line break, then at ``. ``, the last sentence if it mentions
  ``atok``, ``final answer is`` or ``boxed``, else the first; the words ``the final answer is``, ``atok`` tags and
  line breaks deleted (inside words too); the text after the last ``=``; the first ``$...$`` span;
  :func:`reference_strip` and the unit clean-up.
- the gold answer (after :func:`reference_strip`) decides: *numeric* when it holds a digit, *with letters* when a
  letter comes before its first digit. A numeric gold skips parts without a digit, and a numeric gold without
  letters (``30``, ``-1``, ``(3,4]``, ``371,\\!043,\\!400``) reads **the last number of the whole text** (``,:[]``
  removed) as soon as a part holds a digit and none of ``\\times \\div \\frac ^ sqrt log``. A part that ends up
  empty also reads that last number. The first non-empty part wins.

:func:`reference_strip` follows ``parser.py`` ``strip_string`` (unit words kept, as the reference calls it): line
breaks, a final ``.``, ``\\!``, ``\\left``/``\\right``, a trailing ``\\text{unit}``, degrees, ``$``, ``%``,
``and``, ``\\mathbf``, ``\\mbox{}`` removed; ``\\text{x}`` -> ``x``; ``dfrac``/``tfrac`` -> ``frac``; number words
-> digits (the rules of the ``word2number`` package it calls, reimplemented here); ``x=``-style prefixes dropped;
``5.00`` -> ``5``; ``\\frac12`` -> ``\\frac{1}{2}``; ``3/4`` -> ``\\frac{3}{4}``; ``\\sqrt2`` -> ``\\sqrt{2}``.
The unit clean-up follows ``clean_units``: ``$ ¥ ° °C`` removed; for gsm8k/arith ``π`` -> ``3.14``, else ``\\pi``.

Where we do not follow the reference:

- math/math500, last resort: the reference's multiple-choice reading also matches "options" taken from the lines
  of the problem text (MATH problems have no ``Choices:`` list, so every problem line holding a ``)`` becomes an
  "option": ``f(x) = 3`` is option ``f(x`` with text ``=3``, and ``f(x`` can be read as the answer); we keep only
  its stand-alone letter.
- the comparison (``grader.py`` ``math_equal``) is ours, as said above: e.g. a gsm8k piece can read ``$18``, which
  our checker takes for 18.
- the reference strips the gold answer too (``parse_ground_truth``); we judge against the task's gold unchanged
  (our checker normalises both sides), and use the stripped gold only for AGIEval's numeric/letter test.
- dead code is left out: markers that can never be the first one found (``answer is``, ``correct answer``, ...,
  each containing ``answer``), and ``strip_string``'s unwrapping of ``{x}`` (it tests ``isalnum()`` on a string that
  holds the braces, so it never fires).

Only the standard library.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from unlock_eval.checker.extract import _require_str

#: The data sets whose reading this module knows (``arith``, our generated arithmetic, reads like ``gsm8k``).
DATASETS = ("gsm8k", "arith", "math", "math500", "agieval_math", "agieval_sat_math")
#: The reference's time limit per comparison, in seconds (``evaluate.py``: pebble ``map(..., timeout=3)``).
REFERENCE_TIMEOUT = 3.0
#: The reference's stop strings (``base_class.py``), in its order: the text is cut at each in turn.
STOP_STRINGS = (
    "</s>", "<|im_end|>", "<|endoftext|>", "assistant", "Assistant", "user", "_end", "_start", "Question:", "Question",
    "Continuation", "Continuing", "Continues", "You are an AI", "[Question]", "```", "I hope", "Subproblem", "</atok>",
)  # fmt: skip

# A number as the reference finds one: optional '-', '$', '-$' or '$-', digits with one optional '.', ':' or '/'
# inside, an optional exponent 'e5' and power '^2'.
_NUMBER = re.compile(r"(?:-\$|\$-|-|\$)?\d*[.:/]?\d+(?:[eE][+-]?\d+)?(?:\^[+-]?\d+)?")

# ---- strip_string -----------------------------------------------------------------------------------------------

_SMALL = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_WORD_VALUES = {word: value for value, word in enumerate(_SMALL)}
_WORD_VALUES.update(zip("twenty thirty forty fifty sixty seventy eighty ninety".split(), range(20, 100, 10)))
_WORD_VALUES.update(hundred=100, thousand=1000, million=10**6, billion=10**9)
_SCALES = ("thousand", "million", "billion")


def _group_value(words: list[str]) -> int:
    """word2number's value of the words before or between scale words (its fixed formulas, by count)."""
    v = [_WORD_VALUES[w] for w in words]
    if len(v) == 4:
        return v[0] * v[1] + v[2] + v[3]
    if len(v) == 3:
        return v[0] * v[1] + v[2]
    if len(v) == 2:
        return v[0] * v[1] if 100 in v else v[0] + v[1]
    return v[0]  # an empty group raises IndexError: the text stays as it is


def _spelled_number(text: str) -> str:
    """The number the number words of ``text`` spell, as the reference's ``word2number`` call reads them ('five'
    -> '5', 'twenty one apples' -> '21', '007' -> '7'); ``text`` unchanged when it spells none or is malformed."""
    lowered = text.replace("-", " ").lower()
    try:
        if lowered.isdigit():
            return str(int(lowered))
        words = [w for w in lowered.split() if w in _WORD_VALUES or w == "point"]
        if not words or any(words.count(w) > 1 for w in (*_SCALES, "point")):
            return text
        whole, _, decimals = " ".join(words).partition("point")
        whole, decimals = whole.split(), decimals.split()
        at = {s: whole.index(s) if s in whole else -1 for s in _SCALES}
        if -1 < at["thousand"] < max(at["million"], at["billion"]) or -1 < at["million"] < at["billion"]:
            return text
        total: float = 0
        if len(whole) == 1:
            total = _WORD_VALUES[whole[0]]
        elif whole:
            start = 0
            for scale in reversed(_SCALES):  # billions, then millions, then thousands
                if at[scale] > -1:
                    total += _group_value(whole[start : at[scale]]) * _WORD_VALUES[scale]
                    start = at[scale] + 1
            rest = next((at[s] for s in _SCALES if -1 < at[s] != len(whole) - 1), None)
            if rest is not None:
                total += _group_value(whole[rest + 1 :])
            elif all(i == -1 for i in at.values()):
                total += _group_value(whole)
        if decimals:
            digits = [_WORD_VALUES[w] for w in decimals if w in _SMALL[:10]]
            total += float("0." + "".join(map(str, digits))) if len(digits) == len(decimals) else 0
        return str(total)
    except (IndexError, ValueError):
        return text


def _fix_fracs(text: str) -> str:
    r"""'\frac12' -> '\frac{1}{2}', '\frac1{2}' -> '\frac{1}{2}'; unchanged when a '\frac' has under two characters."""
    head, *tails = text.split("\\frac")
    out = head
    for tail in tails:
        if tail.startswith("{"):
            out += "\\frac" + tail
        elif len(tail) < 2:
            return text
        elif tail[1] == "{":
            out += "\\frac{" + tail[0] + "}" + tail[1:]
        else:
            out += "\\frac{" + tail[0] + "}{" + tail[1] + "}" + tail[2:]
    return out


_SLASH = re.compile(r"^\s*\d+(?:\.\d+)?\s*/\s*\d+(?:\.\d+)?\s*$")


def _fix_slash(text: str) -> str:
    r"""'3/4' -> '\frac{3}{4}' (numbers only). With a space in the numerator the reference splits it at its first
    space: ' 3/4' and '3 /4' give '\frac{3}{4}', ' 3 /4' gives '\frac{}{4}' (both sides stripped again)."""
    if not _SLASH.match(text):
        return text
    top, bottom = text.split("/")
    if " " not in top:
        return f"\\frac{{{top}}}{{{bottom}}}"
    first, second = top.split(" ")[0], top.split(" ")[1].strip()
    if second and text == f"{first} {second}/{bottom}":
        return f"{reference_strip(first)}\\frac{{{reference_strip(second)}}}{{{reference_strip(bottom)}}}"
    return f"\\frac{{{reference_strip(first)}}}{{{reference_strip(bottom)}}}"


_TRAILING_TEXT = re.compile(r"\\text\{.*?\}$")


def reference_strip(text: str) -> str:
    """An answer cleaned the way the reference's ``strip_string`` cleans one (see the module docstring)."""
    s = str(text).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    s = _TRAILING_TEXT.sub("", s).strip() or s  # a unit in \text{} at the end, unless it is the whole answer
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = _spelled_number(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for prefix in ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"):
        s = s.replace(prefix, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "").replace(" .", " 0.").replace("{.", "{0.")
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty").replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox\{.*?\}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s.startswith("."):
        s = "0" + s
    halves = s.split("=")
    if len(halves) == 2 and len(halves[0]) <= 2:
        s = halves[1]
    s = re.sub(r"(\d+(?:\.\d+)?)√([^{}\s]+)", r"\1\\sqrt(\2)", s)
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s)
    return _fix_slash(_fix_fracs(s))


def _units(text: str, dataset: str) -> str:
    """``clean_units``: pi as 3.14 for the word-problem sets, as ``\\pi`` for the others; currency, degrees gone."""
    if dataset in ("gsm8k", "arith"):
        text = text.replace("\\pi", "π")
        text = re.sub(r"(?<![\d}])\\?π", "3.14", text)
        text = re.sub(r"(\d)(\\?π)", r"\1*3.14", text)
    else:
        text = text.replace("π", "\\pi")
    for old, new in (("%", "/100"), ("$", ""), ("¥", ""), ("°C", ""), (" C", ""), ("°", "")):
        text = text.replace(old, new)
    return text


# ---- shared pieces ----------------------------------------------------------------------------------------------


def _boxed(text: str) -> str:
    """``find_box``: what follows the last 'boxed' up to its closing brace (all braces count), else up to a '$'."""
    if "boxed" not in text:
        return text
    rest = text.split("boxed")[-1]
    if not rest.startswith("{"):
        return rest.split("$")[0].strip()
    depth = 0
    for i, ch in enumerate(rest):
        depth += (ch == "{") - (ch == "}")
        if depth == 0:
            return rest[1:i]
    return rest[1:]


def _dollars(text: str) -> str:
    """'$$' and '$\\$' as '$', then ``find_dollar``: the first '$...$' span when there are two '$' or more."""
    text = re.sub(r"\$\$|\$\\\$", "$", text)
    if text.count("$") < 2:
        return text
    start = text.index("$") + 1
    return text[start : text.index("$", start)]


def _last_number(text: str, drop: str = ",") -> str:
    found = _NUMBER.findall(re.sub(f"[{re.escape(drop)}]", "", text))
    return found[-1] if found else ""


def _cut_before_word_mark(text: str) -> str:
    """The text before the first punctuation mark that is followed by a letter ('5.In' -> '5', '\\frac' -> '')."""
    m = re.search(r"[^\w\s][a-zA-Z]", text)
    return text[: m.start()] if m else text


# ---- gsm8k, arith, math, math500, multiple choice: pieces ---------------------------------------------------------

_MARKERS = ("boxed", "<atok>", "atok", "answer", "Final Answer", "choice is", "choice:", "####", "Therefore", "Thus")
_FILLERS = {"final", "answer", "atok", "correct", "solution", "is", "thus", "the", "therefore"}
_EDGES = ".,\n !?>/<"
# deleted from each piece before reading it (order matters: 'therefore' loses its 'the' first)
_PIECE_WORDS = re.compile(r"\[|\]|<?/?atok>?|the|final|answer|therefore|is|so|thus|\n", re.IGNORECASE)


def _pieces(text: str) -> list[str]:
    """The text split on the markers until no piece holds one; fillers dropped; split pieces shortest first."""
    queue, kept = [(text, 1)], []
    while queue:
        piece, whole = queue.pop(0)
        marker = next((m for m in _MARKERS if m in piece), None)
        if marker is not None:
            queue += [(part.strip(_EDGES), 0) for part in piece.strip(_EDGES).split(marker)]
            continue
        bare = piece.strip(string.punctuation).strip()
        if bare and bare.lower() not in _FILLERS:
            kept.append((piece, whole))
    return [piece for piece, _ in sorted(kept, key=lambda item: (item[1], len(item[0])))]


def _read_gsm8k(pieces: list[str], dataset: str) -> str:
    for piece in pieces:
        p = _PIECE_WORDS.sub("", piece)
        if "=" in p:
            p = p.split("=")[-1].strip()
        answer = _units(reference_strip(_boxed(_dollars(p))), dataset)
        if " " in answer:
            answer = p.split(" ")[0]  # the reference takes the first word of the piece here, not of the answer
        answer = _cut_before_word_mark(answer)
        if not re.search(r"\d", answer):
            answer = _last_number(p)
        if answer:
            return answer
    return ""


def _only_punctuation(text: str) -> bool:
    return all(ch in string.punctuation or ch.isspace() for ch in text)


def _read_math(pieces: list[str], text: str, dataset: str) -> str:
    for piece in pieces:
        p = _PIECE_WORDS.sub("", piece)
        if "=" in p:
            p = p.split("=")[-1].strip()
        p = _units(reference_strip(_boxed(_dollars(p))), dataset)
        if not any(op in p for op in "+-*/=\\"):
            number = _cut_before_word_mark(p).replace(" ", "")
            if _NUMBER.findall(number) == [number]:
                p = number
        p = p.strip("[] ;:.,")
        if p and not _only_punctuation(p):
            return p
    answer = _units(reference_strip(_boxed(_dollars(_last_number(text)))), dataset)
    return answer.split(" ")[0].strip(".: \n") or _read_choice(pieces, text, ())


_LETTER = re.compile(r"(?:^|[ (\n\[])[a-dA-D](?=[ \n)\]]|$)")


def _read_choice(pieces: list[str], text: str, choices: Sequence[str]) -> str:
    """The multiple-choice reading (the reference's ``extract_multi_choice_answer``), ``choices`` as '(A) text'."""
    marked = any(m in text for m in _MARKERS)
    options = []
    for choice in choices:
        parts = choice.split(")")
        if len(parts) > 1:
            options.append((parts[0].strip("("), re.sub(r"[,.: ]", "", parts[1].strip()).strip().lower()))
    for piece in pieces:
        p = re.sub(r"[\[,.:\]]", "", piece).strip()
        letters = _LETTER.findall(p)
        if letters and (marked or len(pieces) == 1):
            return re.sub(r"[^a-dA-D]", "", letters[0])
        p = p.replace("'s", "ary").lower().replace(" ", "").strip()
        best, last = None, -1
        for letter, option in options:
            if option in p and p.rfind(option) > last:
                best, last = letter, p.rfind(option)
        if best is not None:
            return best
    return ""


# ---- agieval_math ----------------------------------------------------------------------------------------------

_AGIEVAL_SPLITS = (
    "<atok>", "final answer is", "answer is", "answer to the question is", "Final Answer", "choice is", "choice:",
    "####",
)  # fmt: skip
_AGIEVAL_WORDS = re.compile(r"the|final|answer|is|<?/?atok>?|\n", re.IGNORECASE)
_MARKED_SENTENCE = re.compile(r"atok|final answer is|boxed")
_NOT_A_NUMBER = ("\\times", "\\div", "\\frac", "^", "sqrt", "log")


def _read_agieval(text: str, gold: str) -> str:
    parts = [text]
    while True:
        before = len(parts)
        for token in _AGIEVAL_SPLITS:
            parts = [part for chunk in parts for part in reversed(chunk.split(token))]
        if len(parts) == before:
            break
    gold = reference_strip(gold)
    first_digit = next((i for i, ch in enumerate(gold) if ch.isdigit()), None)
    numeric = first_digit is not None
    lettered = any(ch.isalpha() for ch in gold[:first_digit])
    last_number = _last_number(text, drop=",:[]").strip()
    for part in parts:
        p = _boxed(part)
        for stop in (".\n", ". "):
            if stop in p:
                sentences = p.split(stop)
                p = (sentences[-1] if _MARKED_SENTENCE.search(sentences[-1]) else sentences[0]).strip()
        p = _AGIEVAL_WORDS.sub("", p)
        if "=" in p:
            p = p.split("=")[-1].strip()
        p = _units(reference_strip(_dollars(p)), "agieval_math")
        has_digit = any(ch.isdigit() for ch in p)
        if numeric and not has_digit:
            continue
        if numeric and not lettered and not any(op in p for op in _NOT_A_NUMBER):
            p = last_number
        p = p.strip(".: \n") or last_number
        if p:
            return p
    return ""


# ---- entry point -----------------------------------------------------------------------------------------------


def extract_reference(text: str, dataset: str, gold: str | None = None, choices: Sequence[str] = ()) -> str | None:
    """The answer the paper's official code reads in ``text`` for ``dataset`` (one of :data:`DATASETS`), or None.

    ``gold`` (the gold answer) is needed for ``agieval_math``, whose reading depends on it; ``choices`` (the
    options, each '(A) text') for ``agieval_sat_math``. See the module docstring for the rules.
    """
    _require_str(text, "extract_reference", "text")
    if dataset not in DATASETS:
        raise ValueError(f"extract_reference: unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
    if dataset == "agieval_math" and not isinstance(gold, str):
        raise ValueError("extract_reference: agieval_math needs the gold answer (gold=...): its reading depends on it")
    for stop in STOP_STRINGS:
        text = text.split(stop)[0].strip()
    text = text.replace("\u043a\u0438", "").split("I hope")[0].strip()  # 'ки' (Cyrillic), dropped as there
    if not text:
        return None
    if dataset == "agieval_math":
        answer = _read_agieval(text, gold)
    elif dataset == "agieval_sat_math":
        answer = _read_choice(_pieces(text), text, choices).upper()
    elif dataset in ("math", "math500"):
        answer = _read_math(_pieces(text), text, dataset)
    else:
        answer = _read_gsm8k(_pieces(text), dataset)
    return answer or None
