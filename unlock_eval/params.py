"""Declaring run arguments once: `param()` fields (default, help, parser, engine check) and what derives from them.

A run's arguments are a dataclass whose fields are made with `param()`. From that one declaration come the
parser of loosely typed values (lm-eval hands `-1` as `-1.0` and everything else as strings), the validation
(each field's `check` is the engine's own function, run on construction), the help table and the unknown-key
message. Adapters that share arguments share the dataclass (by inheritance).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, field, fields
from typing import Any

from unlock_eval.errors import ConfigError

_META = "unlock_eval_param"


def param(default: Any = MISSING, help: str = "", parse: Callable | None = None, check: Callable | None = None) -> Any:
    """A dataclass field declaring one argument. `parse(name, raw)` coerces a raw value (or raises ConfigError);
    `check(value)` is the engine's validation of a parsed value (raises ConfigError; a value it returns replaces
    the parsed one), also run when the dataclass is built directly from Python. No default means required; no
    parser means a non-empty string (`as_given`: the check alone takes the raw value)."""
    return field(default=default, metadata={_META: (help, parse or as_text, check)})


def _params(cls_or_obj: Any) -> list[Field]:
    return [f for f in fields(cls_or_obj) if _META in f.metadata]


def parse_and_check(obj: Any) -> None:
    """Coerce each given field with its parser, then run its engine check (None means "not given" and is left
    alone). Runs on construction, so a dataclass built from Python is parsed like one built from model_args."""
    for f in _params(obj):
        value = getattr(obj, f.name)
        if value is not None:
            setattr(obj, f.name, _parse_field(f, value))


def _parse_field(f: Field, value: Any) -> Any:
    _, parse, check = f.metadata[_META]
    value = parse(f.name, value)
    checked = check(value) if check is not None else None
    return value if checked is None else checked


def parse_field(cls: type, name: str, value: Any) -> Any:
    """One declared argument's raw value, parsed and checked as the dataclass does it."""
    return _parse_field(next(f for f in _params(cls) if f.name == name), value)


def help_rows(cls: type) -> list[tuple[str, str]]:
    """(name, help with the default) per argument, in declaration order: the help text of a parameter table."""
    rows = []
    for f in _params(cls):
        text = f.metadata[_META][0]
        if f.default is MISSING:
            text += " (required)"
        elif f.default is not None:
            text += f" (default {f.default})"
        rows.append((f.name, text))
    return rows


def markdown_table(cls: type) -> str:
    """The argument table as markdown (the README's table is this text; `unlock-eval args` prints it)."""
    lines = ["| model_arg | meaning |", "|---|---|"]
    escaped = [(name, text.replace("|", r"\|")) for name, text in help_rows(cls)]
    lines += [f"| `{name}` | {text} |" for name, text in escaped]
    return "\n".join(lines)


def names(cls: type) -> list[str]:
    return [f.name for f in _params(cls)]


def parse_known(cls: type, raw: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Build `cls` from the keys of `raw` it declares (each parsed, then checked); returns it and the other keys."""
    declared = {f.name: f for f in _params(cls)}
    values, rest = {}, {}
    for key, value in raw.items():
        if key not in declared:
            rest[key] = value
        elif value is not None:
            values[key] = value  # parsed and checked by the dataclass itself (parse_and_check)
    missing = [
        f"{name}=... ({f.metadata[_META][0]})"
        for name, f in declared.items()
        if f.default is MISSING and name not in values
    ]
    if missing:
        raise ConfigError(f"missing {'; '.join(missing)}")
    return cls(**values), rest


# ------------------------------------------------------------------------------------------------ parsers
# Each takes (name, raw value) and returns the typed value or raises ConfigError naming the argument.


def one_of(name: str, allowed: Iterable[str]) -> Callable[[Any], None]:
    """An engine check for `param(check=...)`: the value is one of `allowed` (a dict's keys, or a sequence), else one
    line naming the argument and every allowed value."""
    allowed = list(allowed)

    def check(value: Any) -> None:
        if value not in allowed:
            raise ConfigError(f"{name}={value!r}: allowed values are {', '.join(allowed)}")

    return check


def as_given(name: str, value: Any) -> Any:
    """No parsing: the argument's engine check takes the raw value and returns the typed one (alpha)."""
    return value


def as_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}={value!r}: expected a non-empty string")
    return value.strip()


def as_raw_text(name: str, value: Any) -> str:
    """A non-empty string kept as given (templates: a trailing newline is part of the prompt)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}={value!r}: expected a non-empty string")
    return value


def as_revision(name: str, value: Any) -> str:
    """A hub revision: lm-eval hands an all-digit one as a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(int(value)) if float(value).is_integer() else str(value)
    return as_text(name, value)


def as_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r}: expected a finite number") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ConfigError(f"{name}={value!r}: expected a finite number")
    return number


def as_float_list(name: str, value: Any, example: str) -> list[float]:
    """Finite numbers as typed on a command line (`0.1;0.2`, `[0.1,0.2]`, `0.1 0.2`) or a list; none is an error
    that shows `example`. Lists use `;` on the command line because lm-eval splits --model_args on commas."""
    parts = value if isinstance(value, (list, tuple)) else re.split(r"[;\s,]+", str(value).strip().strip("[]"))
    numbers = [as_float(name, part) for part in parts if str(part) != ""]
    if not numbers:
        raise ConfigError(f"{name}={value!r}: expected numbers like {example}")
    return numbers


def as_int(name: str, value: Any, minimum: int = 1) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not number.is_integer() or number < minimum:
        raise ConfigError(f"{name}={value!r}: expected an integer >= {minimum}")
    return int(number)


def as_index_list(name: str, value: Any) -> list[int]:
    """Layer indices: `3-10` (inclusive), `3;5;7`, `3 5 7`, `[3,5]` or a list. Lists use `;` on the command line
    because lm-eval splits --model_args on commas."""
    if isinstance(value, (list, tuple)):
        return [as_int(name, v, 0) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [as_int(name, value, 0)]
    text = str(value).strip().strip("[]")
    span = re.fullmatch(r"(\d+)\s*-\s*(\d+)", text)
    if span:
        lo, hi = int(span.group(1)), int(span.group(2))
        if lo > hi:
            raise ConfigError(f"{name}={value!r}: empty range")
        return list(range(lo, hi + 1))
    parts = [p for p in re.split(r"[;\s,]+", text) if p]
    if not parts:
        raise ConfigError(f"{name}={value!r}: expected layer indices like 3-10 or 3;5;7")
    return [as_int(name, p, 0) for p in parts]
