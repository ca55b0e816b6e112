"""The leaderboard as an object: one row per run, a score and a Δ against the baseline per task column, extras."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlock_eval.errors import ConfigError
from unlock_eval.reports.behaviour import Behaviour, behaviour, run_samples
from unlock_eval.reports.chance import Scoring, scoring
from unlock_eval.reports.runs import HYPER_KEYS, Run
from unlock_eval.reports.stats import Delta, paired_delta, unpaired_delta

EXTRAS = (
    "gen_len",
    "answer_found",
    "steps",
    "degenerate",
    "repetition",
    "first_word_entropy",
    "setup_s",
    "extra_passes",
)
BEHAVIOUR = {"gen_len", "steps", "degenerate", "repetition", "first_word_entropy"}  # descriptive: no "best" is marked
LOWER_IS_BETTER = {"setup_s", "extra_passes"}


@dataclass
class Cell:
    value: float | None
    stderr: float | None = None
    delta: Delta | None = None
    best: bool = False


@dataclass
class Table:
    """`rows` (runs), `columns` (tasks and groups), `cells[(row, column)]`, `extras[(row, name)]`, the baseline of
    each row, the unit of the generated-length column, and footnotes. Formats render it; sweeps build on it."""

    rows: list[Run]
    columns: list[str]
    cells: dict[tuple[int, str], Cell]
    extras: dict[tuple[int, str], Cell]
    baseline: dict[int, int | None]
    length_unit: str
    notes: list[str] = field(default_factory=list)
    lengths: dict[int, list[float]] = field(default_factory=dict)  # row -> per-sample generated length, in the unit
    marks: dict[int, str] = field(default_factory=dict)  # row -> a remark shown with its method, e.g. "chosen on dev"
    behaviour: dict[int, Behaviour] = field(default_factory=dict)  # row -> behaviour of its logged samples
    # (row, column) -> strict accuracy, fallback share and chance level of a checker-scored task (reports.chance)
    scoring: dict[tuple[int, str], Scoring] = field(default_factory=dict)

    @property
    def checked_columns(self) -> list[str]:
        """The task columns scored by our checker in some row: they get strict, fallback and chance columns."""
        return [c for c in self.columns if any(key[1] == c for key in self.scoring)]

    @property
    def reference_columns(self) -> list[str]:
        """The checked columns with the paper's reading (``acc_reference``) in some row: they get a reference column."""
        referenced = {column for (_, column), s in self.scoring.items() if s.reference is not None}
        return [c for c in self.checked_columns if c in referenced]

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per row (what csv writes; numbers unformatted)."""
        out = []
        checked, referenced = set(self.checked_columns), set(self.reference_columns)
        for i, run in enumerate(self.rows):
            record: dict[str, Any] = {"method": run.method, "source": run.source, "target": run.target}
            record["mark"] = self.marks.get(i)
            record.update({k: run.hyper.get(k) for k in HYPER_KEYS})
            for column in self.columns:
                cell = self.cells.get((i, column), Cell(None))
                record[column] = cell.value
                record[f"{column}_stderr"] = cell.stderr
                d = cell.delta
                record.update(
                    {
                        f"{column}_delta": d and d.delta,
                        f"{column}_delta_low": d and d.low,
                        f"{column}_delta_high": d and d.high,
                        f"{column}_mcnemar_p": d and d.p_value,
                        f"{column}_paired": d and d.paired,
                    }
                )
                if column in checked:
                    record.update(_scoring_record(column, self.scoring.get((i, column))))
                if column in referenced:
                    scored = self.scoring.get((i, column))
                    record[f"{column}_reference"] = scored and scored.reference
            record.update({name: self.extras[(i, name)].value for name in EXTRAS})
            out.append(record)
        return out


def _scoring_record(column: str, s: Scoring | None) -> dict[str, Any]:
    """The csv fields of one checker-scored cell: strict accuracy, fallback share, chance level and interval."""
    c = s and s.chance
    return {
        f"{column}_strict": s and s.strict,
        f"{column}_fallback_share": s and s.fallback_share,
        f"{column}_chance": c and c.level,
        f"{column}_chance_low": c and c.low,
        f"{column}_chance_high": c and c.high,
        f"{column}_at_chance": s and s.at_chance,
    }


def _task_scoring(task) -> Scoring | None:
    """A task cell's strict/fallback/chance/reference numbers: from its samples' checker records, else (no samples)
    from the `acc_strict` and `acc_reference` metrics of our tasks (no chance level then)."""
    found = scoring(task.samples)
    if found is not None or task.metric != "acc" or "acc_strict" not in task.metrics:
        return found
    strict = task.metrics["acc_strict"]
    share = (task.value - strict) / task.value if task.value > 0 else None
    reference = task.metrics.get("acc_reference")
    return Scoring(n=0, lenient=task.value, strict=strict, fallback_share=share, rule_counts={}, reference=reference)


def _scores(run: Run, column: str) -> dict[tuple[str, int], tuple[str, float]] | None:
    task = run.tasks[column]
    if task.samples is None:
        return None
    return {key: (str(s.get("doc_hash", "")), float(s[task.metric])) for key, s in task.samples.items()}


def compare(run: Run, base: Run, column: str) -> Delta:
    """Δ of `run` over `base` on one column: paired on shared, identical documents; unpaired otherwise."""
    a, b = _scores(run, column), _scores(base, column)
    if a is not None and b is not None:
        shared = sorted(set(a) & set(b))
        if shared and all(a[k][0] == b[k][0] for k in shared):
            return paired_delta([a[k][1] for k in shared], [b[k][1] for k in shared])
        return unpaired_delta([v for _, v in a.values()], [v for _, v in b.values()])
    x, y = run.tasks[column], base.tasks[column]  # no samples: a normal interval from lm-eval's stderrs
    se = math.sqrt((x.stderr or 0.0) ** 2 + (y.stderr or 0.0) ** 2)
    diff = x.value - y.value
    return Delta(diff, diff - 1.96 * se, diff + 1.96 * se, p_value=None, n_run=0, n_base=0, paired=False)


def _pick_baseline(rows: list[Run], chosen: str | None) -> dict[int, int | None]:
    if chosen is not None:
        matches = [i for i, run in enumerate(rows) if chosen in (run.label, run.method) or chosen in run.files]
        matches = matches or [i for i, run in enumerate(rows) if any(chosen in f for f in run.files)]
        if len(matches) != 1:
            labels = "; ".join(run.label for run in rows)
            raise ConfigError(f"--baseline {chosen!r} matches {len(matches)} rows; rows are: {labels}")
        return dict.fromkeys(range(len(rows)), matches[0])
    plain = [i for i, run in enumerate(rows) if run.method == "plain"]

    def base(run: Run) -> int | None:  # the plain target, at the run's dtype when there are several
        same_target = [i for i in plain if rows[i].target == run.target]
        same_dtype = [i for i in same_target if rows[i].hyper.get("dtype") == run.hyper.get("dtype")]
        return (same_dtype or same_target[-1:] or plain[:1] or [None])[0]

    return {i: base(run) for i, run in enumerate(rows)}


def _generated_lengths(run: Run, tokenizer) -> list[float]:
    lengths = []
    for task in run.tasks.values():
        for sample in (task.samples or {}).values():
            if tokenizer is not None:
                text = sample["resps"][0][0] if sample.get("resps") else ""
                lengths.append(float(len(tokenizer(text, add_special_tokens=False)["input_ids"])))
            elif "gen_len_pieces" in sample:
                lengths.append(float(sample["gen_len_pieces"]))
    return lengths


def _tokenizer(target: str):
    """The target's tokenizer when it is at hand without downloading or converting anything, else None."""
    from transformers import AutoTokenizer

    from unlock_eval.models import EMBEDDED_MODELS, converted_dir

    try:
        if Path(target).is_dir():
            return AutoTokenizer.from_pretrained(target)
        if target in EMBEDDED_MODELS:  # converted in the default cache when the run happened on this machine
            folder = converted_dir(target)
            return AutoTokenizer.from_pretrained(str(folder)) if folder.is_dir() else None
        return AutoTokenizer.from_pretrained(target, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure means the tokenizer-free unit is used
        return None


def build_table(rows: list[Run], notes: list[str] | None = None, baseline: str | None = None) -> Table:
    """The comparison table of these runs (see `Table`); `baseline` picks the baseline row by label or file."""
    columns = sorted({c for run in rows for c in run.tasks})
    base = _pick_baseline(rows, baseline)
    cells: dict[tuple[int, str], Cell] = {}
    scorings: dict[tuple[int, str], Scoring] = {}
    for i, run in enumerate(rows):
        for column, task in run.tasks.items():
            j = base[i]
            delta = None
            if j is not None and j != i and column in rows[j].tasks:
                delta = compare(run, rows[j], column)
            cells[(i, column)] = Cell(task.value, task.stderr, delta)
            found = _task_scoring(task)
            if found is not None:
                scorings[(i, column)] = found
    tokenizers = {run.target: _tokenizer(run.target) for run in rows}
    use_tokens = all(t is not None for t in tokenizers.values())
    extras: dict[tuple[int, str], Cell] = {}
    all_lengths: dict[int, list[float]] = {}
    behaviours: dict[int, Behaviour] = {}
    for i, run in enumerate(rows):
        lengths = all_lengths[i] = _generated_lengths(run, tokenizers[run.target] if use_tokens else None)
        found = [t.metrics["answer_found"] for t in run.tasks.values() if "answer_found" in t.metrics]
        record = run.record or {}
        extras[(i, "gen_len")] = Cell(sum(lengths) / len(lengths) if lengths else None)
        extras[(i, "answer_found")] = Cell(sum(found) / len(found) if found else None)
        b = behaviour(run_samples(run))
        if b is not None:
            behaviours[i] = b
        extras[(i, "steps")] = Cell(b and b.step_structured)
        extras[(i, "degenerate")] = Cell(b and b.degenerate)
        extras[(i, "repetition")] = Cell(b and b.repetition)
        extras[(i, "first_word_entropy")] = Cell(b and b.first_word_entropy)
        reused = (record.get("details") or {}).get("model_reused")  # a sweep point's set-up is its first point's
        extras[(i, "setup_s")] = Cell(None if reused else record.get("setup_seconds"))
        extras[(i, "extra_passes")] = Cell(record.get("extra_forward_passes_per_token", 0))
    _mark_best(cells, columns, len(rows), higher=True)
    for name in EXTRAS:
        if name not in BEHAVIOUR:
            _mark_best(extras, [name], len(rows), higher=name not in LOWER_IS_BETTER)
    unit = "target tokens" if use_tokens else "pieces, tokenizer-free"
    table = Table(
        rows, columns, cells, extras, base, unit, list(notes or []), all_lengths, behaviour=behaviours, scoring=scorings
    )
    _mark_test_extraction(table)
    return table


def _mark_test_extraction(table: Table) -> None:
    """Flag the rows whose key was extracted from test documents their tasks score (the reference's fallback for
    test-only data sets, an explicit opt-in: `details.extraction_overlap` of the record)."""
    for i, run in enumerate(table.rows):
        overlap = ((run.record or {}).get("details") or {}).get("extraction_overlap")
        if not overlap:
            continue
        leaked = [c for c in run.tasks if re.match(overlap["tasks"], c)]
        if leaked:
            table.marks[i] = "key saw test documents"
            table.notes.append(
                f"{run.label}: key saw test documents — {overlap['note']} ({', '.join(leaked)}); its score there is "
                f"not a held-out score (extract_from={overlap['extract_from']}, an opt-in)"
            )


def _mark_best(cells: dict[tuple[int, str], Cell], columns: list[str], n: int, higher: bool) -> None:
    for column in columns:
        values = [cells[(i, column)].value for i in range(n) if (i, column) in cells]
        values = [v for v in values if v is not None]
        if len(values) < 2 or len(set(values)) == 1:
            continue  # nothing to single out
        best = max(values) if higher else min(values)
        for i in range(n):
            cell = cells.get((i, column))
            if cell is not None and cell.value == best:
                cell.best = True
