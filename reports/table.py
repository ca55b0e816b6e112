"""The leaderboard as an object: one row per run, a score and a Δ against the baseline per task column, extras."""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlock_eval.errors import ConfigError
from unlock_eval.reports.behaviour import Behaviour, behaviour, run_samples
from unlock_eval.reports.chance import Scoring, scoring
from unlock_eval.reports.runs import HYPER_KEYS, Run
from unlock_eval.reports.stats import Delta, paired_delta, unpaired_delta

progress = logging.getLogger("unlock_eval.reports.progress")  # a line per slow step (reports/__init__.py)
PROGRESS_EVERY = 5.0  # seconds: a long row loop says how far it is at most this often

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


def _generated_lengths(run: Run, count_tokens) -> list[float]:
    lengths = []
    for task in run.tasks.values():
        for sample in (task.samples or {}).values():
            if count_tokens is not None:
                text = sample["resps"][0][0] if sample.get("resps") else ""
                lengths.append(float(count_tokens(text)))
            elif "gen_len_pieces" in sample:
                lengths.append(float(sample["gen_len_pieces"]))
    return lengths


def _tokenizer(target: str):
    """A function counting the target's tokens in a text (no special tokens) when its tokenizer is at hand without
    downloading or converting anything, else None. An embedded model's converted tokenizer.json is read by
    `tokenizers` itself: the same ids as transformers' AutoTokenizer (checked on thousands of texts), in a
    third of the time and without importing transformers."""
    from unlock_eval.models import EMBEDDED_MODELS, conversion_cached, converted_dir

    try:
        if target in EMBEDDED_MODELS and not Path(target).is_dir():  # converted in the default cache when it ran here
            if not conversion_cached(target):
                return None
            file = converted_dir(target) / "tokenizer.json"
            from tokenizers import Tokenizer

            fast = Tokenizer.from_file(str(file))
            return lambda text: len(fast.encode(text, add_special_tokens=False).ids)
        if not Path(target).is_dir() and not _hub_cached(target):
            return None  # not here: no need to import transformers to learn it
        from transformers import AutoTokenizer

        if Path(target).is_dir():
            tokenizer = AutoTokenizer.from_pretrained(target)
        else:
            tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=True)
        return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    except Exception:  # noqa: BLE001 - any failure means the tokenizer-free unit is used
        return None


def _hub_cached(repo_id: str) -> bool:
    """Whether the local Hub cache holds a tokenizer file of this repo (nothing is downloaded)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        files = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
        return any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in files)
    except Exception:  # noqa: BLE001 - not a repo id
        return False


def _rows_said(rows: list[Run]):
    """enumerate(rows), with a progress line whenever PROGRESS_EVERY seconds passed without one."""
    said = time.monotonic()
    for i, run in enumerate(rows):
        if time.monotonic() - said > PROGRESS_EVERY:
            progress.info("report: row %d of %d (%s)", i + 1, len(rows), run.label)
            said = time.monotonic()
        yield i, run


def build_table(rows: list[Run], notes: list[str] | None = None, baseline: str | None = None) -> Table:
    """The comparison table of these runs (see `Table`); `baseline` picks the baseline row by label or file."""
    columns = sorted({c for run in rows for c in run.tasks})
    base = _pick_baseline(rows, baseline)
    cells: dict[tuple[int, str], Cell] = {}
    scorings: dict[tuple[int, str], Scoring] = {}
    progress.info("report: %d rows: paired Δ against the baseline, strict and chance scores", len(rows))
    for i, run in _rows_said(rows):
        for column, task in run.tasks.items():
            j = base[i]
            delta = None
            if j is not None and j != i and column in rows[j].tasks:
                delta = compare(run, rows[j], column)
            cells[(i, column)] = Cell(task.value, task.stderr, delta)
            found = _task_scoring(task)
            if found is not None:
                scorings[(i, column)] = found
    targets = list(dict.fromkeys(run.target for run in rows))
    progress.info("report: the tokenizer of %s (generated lengths in its tokens, if it is here)", ", ".join(targets))
    tokenizers = {target: _tokenizer(target) for target in targets}  # once per target, not per row (4 s each)
    use_tokens = all(t is not None for t in tokenizers.values())
    extras: dict[tuple[int, str], Cell] = {}
    all_lengths: dict[int, list[float]] = {}
    behaviours: dict[int, Behaviour] = {}
    progress.info("report: generated lengths and behaviour of the logged samples")
    for i, run in _rows_said(rows):
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
    _mark_best(cells, columns, len(rows))  # scores only: set-up seconds or passes are not results
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


def _mark_best(cells: dict[tuple[int, str], Cell], columns: list[str], n: int, higher: bool = True) -> None:
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


# --------------------------------------------------------------------------- provenance: where the numbers come from
@dataclass
class RunSource:
    """One results file behind the table: the rows it feeds, its command as lm-eval recorded it, the documents it
    scored per task (lm-eval's `n-samples`: effective of original) and `--limit`, and the software and machine."""

    file: str
    rows: list[int]
    date: float | None
    command: str
    documents: dict[str, tuple[int | None, int | None]]  # task -> (scored, in the task)
    limit: float | None
    seconds: float | None
    software: dict[str, str]  # lm-eval, transformers, torch, git (lm-eval's git_hash of the folder it ran in)
    machine: str


@dataclass
class Provenance:
    """What the HTML page says about its own origin: when, by what, on what machine; and per results file."""

    generated: str
    software: dict[str, str]
    machine: str
    sources: list[RunSource]


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _env_field(info: str, name: str) -> str | None:
    match = re.search(rf"^{re.escape(name)}:[ \t]*(.*)$", info, re.MULTILINE)
    return match.group(1).strip() if match and match.group(1).strip() else None


def machine_of(info: str | None) -> str:
    """A one-line machine description from lm-eval's `pretty_env_info` (torch's collect_env text)."""
    if not info:
        return "not recorded"
    os_name, cpu, cpus = _env_field(info, "OS"), _env_field(info, "Model name"), _env_field(info, "CPU(s)")
    gpus = re.findall(r"^GPU \d+: (.+)$", info, re.MULTILINE)
    gpu_field = _env_field(info, "GPU models and configuration")
    if not gpus and gpu_field and gpu_field != "Could not collect":
        gpus = [gpu_field]
    cuda = _env_field(info, "Is CUDA available") == "True"
    parts = [os_name or "OS not recorded"]
    parts.append(f"CPU: {cpu or '?'}" + (f" ({cpus} cores)" if cpus else ""))
    counted = {g: gpus.count(g) for g in gpus}
    gpu_text = ", ".join(f"{n}× {g}" if n > 1 else g for g, n in counted.items())
    parts.append(f"GPU: {gpu_text}" if gpus else ("GPU: none visible" if not cuda else "GPU: CUDA available"))
    return "; ".join(parts)


def _args_text(args: Any) -> str:
    if isinstance(args, dict):
        return ",".join(f"{k}={v}" for k, v in args.items())
    return "" if args in (None, "") else str(args)


def command_of(data: dict[str, Any]) -> str:
    """The lm_eval command line a results file records: model, model_args, the tasks asked for (groups, not their
    subtasks), batch size, device, --limit, gen_kwargs, few-shot and chat settings, the response cache."""
    config = data.get("config") or {}
    groups = data.get("group_subtasks") or {}
    inner = {t for subtasks in groups.values() for t in subtasks or []}
    tasks = [t for t in groups if t not in inner] or list(data.get("n-samples") or data.get("results") or {})
    parts = ["lm_eval", "--model", str(config.get("model", "?"))]
    args = _args_text(config.get("model_args"))
    parts += ["--model_args", args] if args else []
    parts += ["--tasks", ",".join(tasks)]
    for flag, key in (("--batch_size", "batch_size"), ("--device", "device"), ("--limit", "limit")):
        value = config.get(key)
        if value not in (None, "", []):
            parts += [flag, _number_text(value)]
    gen = _args_text(config.get("gen_kwargs"))
    parts += ["--gen_kwargs", gen] if gen else []
    shots = {v for v in (data.get("n-shot") or {}).values() if isinstance(v, int)}
    if len(shots) == 1 and shots != {0}:
        parts += ["--num_fewshot", str(shots.pop())]
    if data.get("chat_template"):
        parts.append("--apply_chat_template")
    if data.get("fewshot_as_multiturn"):
        parts.append("--fewshot_as_multiturn")
    if data.get("system_instruction"):
        parts += ["--system_instruction", "…"]
    if config.get("use_cache"):
        parts += ["--use_cache", str(config["use_cache"])]
    return " ".join(parts)


def _number_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _torch_version(info: str | None) -> str | None:
    return _env_field(info or "", "PyTorch version")


def provenance(table: Table) -> Provenance:
    """Where the table's numbers come from, read again from its results files (lm-eval's own records) and this
    machine (the report's)."""
    import json
    import os
    import platform
    from datetime import datetime, timezone

    import unlock_eval
    from unlock_eval.method import RECORD_KEY

    files: dict[str, list[int]] = {}
    for i, run in enumerate(table.rows):
        for file in run.files:
            rows = files.setdefault(file, [])
            rows += [] if i in rows else [i]
    sources = []
    for file, rows in files.items():
        try:
            data = json.loads(Path(file).read_text())
        except (OSError, ValueError):
            data = {}
        config = data.get("config") or {}
        counts = data.get("n-samples") or {}
        documents = {task: (n.get("effective"), n.get("original")) for task, n in counts.items() if isinstance(n, dict)}
        seconds = data.get("total_evaluation_time_seconds")
        try:
            seconds = float(seconds) if seconds is not None else None
        except ValueError:
            seconds = None
        info = data.get("pretty_env_info")
        record = config.get(RECORD_KEY) if isinstance(config.get(RECORD_KEY), dict) else {}
        software = {
            "unlock-eval": record.get("unlock_eval_version"),
            "lm-eval": data.get("lm_eval_version"),
            "transformers": data.get("transformers_version"),
            "torch": _torch_version(info),
            "git commit of the folder it ran in": data.get("git_hash"),
        }
        software = {k: str(v) for k, v in software.items() if v}
        command, limit = command_of(data), config.get("limit")
        sources.append(
            RunSource(file, rows, data.get("date"), command, documents, limit, seconds, software, machine_of(info))
        )
    here = {
        "unlock-eval": unlock_eval.__version__,
        "lm-eval": _version("lm_eval"),
        "transformers": _version("transformers"),
        "torch": _version("torch"),
    }
    machine = f"{platform.platform()}; Python {platform.python_version()}; {os.cpu_count()} CPUs"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Provenance(generated, here, machine, sources)
