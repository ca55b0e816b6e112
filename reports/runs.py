"""Reading lm-eval output folders into runs: method identity, configuration, per-task scores and samples."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlock_eval.errors import ConfigError
from unlock_eval.method import RECORD_KEY, method_of

logger = logging.getLogger("unlock_eval.reports")
METRIC_PREFERENCE = ("acc", "exact_match", "acc_norm")  # the column's score: the first one a task reports
HYPER_KEYS = (
    "alpha", "k", "n", "aggregator", "mode", "layers", "lam", "capability", "protocol", "dtype", "alpha_profile",
    "key_weights",
)  # fmt: skip
# shown as columns only where the rows differ in them (each row's identity always includes them)
VARYING_KEYS = ("protocol", "dtype", "alpha_profile", "key_weights")


@dataclass
class TaskScores:
    """One task of one run: its main metric (value, stderr), the other metrics, and the per-document samples."""

    metric: str
    value: float
    stderr: float | None
    metrics: dict[str, float]
    samples: dict[tuple[str, int], dict[str, Any]] | None = None  # (task, doc_id) -> sample line
    source_file: str = ""
    date: float = 0.0


@dataclass
class Run:
    """One row of the leaderboard: a method on a target, with its configuration and the tasks it was scored on."""

    method: str
    source: str | None
    target: str
    hyper: dict[str, Any]
    record: dict[str, Any] | None
    tasks: dict[str, TaskScores] = field(default_factory=dict)
    date: float = 0.0
    files: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return json.dumps([self.method, self.source, self.target, self.hyper], sort_keys=True, default=str)

    @property
    def label(self) -> str:
        hyper = " ".join(f"{k}={v}" for k, v in self.hyper.items() if k != "capability" and v is not None)
        pair = self.target if self.source in (None, self.target) else f"{self.source} → {self.target}"
        return " ".join(part for part in (self.method, pair, hyper) if part)


def result_files(paths: list[str | Path]) -> list[Path]:
    """Every results_*.json under the given files and folders (an empty selection is an error)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(path.rglob("results_*.json"))
        else:
            raise ConfigError(f"{raw}: no such file or folder")
    if not found:
        raise ConfigError(f"no lm-eval results_*.json under {', '.join(map(str, paths))}")
    return found


def main_metric(results: dict[str, Any]) -> tuple[str, float, float | None, dict[str, float]] | None:
    values = {k: v for k, v in results.items() if "," in k and isinstance(v, (int, float)) and "_stderr" not in k}
    for wanted in METRIC_PREFERENCE:
        for key, value in values.items():
            if key.split(",")[0] == wanted:
                stderr = results.get(key.replace(",", "_stderr,", 1))
                metrics = {k.split(",")[0]: float(v) for k, v in values.items()}
                return wanted, float(value), stderr if isinstance(stderr, (int, float)) else None, metrics
    return None


def _samples(
    folder: Path, tasks: list[str], stamp: str, column: str, read: dict[Path, list | None]
) -> dict[tuple[str, int], dict[str, Any]] | None:
    """The logged samples of these tasks (a group: its subtasks), keyed by (task, doc_id), a single task under its
    column's name (a prompted twin pairs with its locked task's documents); None if any is missing or broken (a
    broken one is skipped with one warning naming it: the cells then read unpaired, as without samples). `read`
    holds the files read so far (a group and its subtasks share files: each is read, and warned of, once)."""
    found = {}
    for task in tasks:
        file = folder / f"samples_{task}_{stamp}.jsonl"
        if not file.is_file():
            return None
        if file not in read:
            read[file] = _read_samples(file)
        if read[file] is None:
            return None
        found.update({(column if tasks == [task] else task, doc_id): sample for doc_id, sample in read[file]})
    return found


def _read_samples(file: Path) -> list[tuple[int, dict[str, Any]]] | None:
    """(doc_id, sample) of every line of a samples_*.jsonl file; None, with one warning naming it, when the file is
    truncated or not lm-eval's."""
    try:
        return _parse_samples(file)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("report: skipping %s: not an lm-eval samples file (%s); its cells read unpaired", file, exc)
        return None


def _parse_samples(file: Path) -> list[tuple[int, dict[str, Any]]]:
    """The lines of a samples file; raises, naming the line, on one that is not a sample."""
    samples = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number} is not JSON: {exc.msg} (truncated?)") from None
        if not isinstance(sample, dict) or "doc_id" not in sample:
            raise ValueError(f"line {number} is not a sample (a JSON object with a doc_id)")
        samples.append((int(sample["doc_id"]), sample))
    return samples


def _cell(name: str, value: Any) -> Any:
    """A setting as the table shows it: a list of a varying setting (alpha_profile, key_weights) as typed, 1;0.5."""
    return ";".join(f"{v:g}" for v in value) if name in VARYING_KEYS and isinstance(value, list) else value


def _identity(config: dict[str, Any]) -> tuple[str | None, str, dict[str, Any]]:
    record = config.get(RECORD_KEY)
    if isinstance(record, dict):
        models = record.get("models", {})
        hyper = dict(record.get("hyperparameters", {}))
        if hyper.get("protocol") == "unlock-eval":
            del hyper["protocol"]  # the default says nothing
        dtype = ((record.get("details") or {}).get("dtypes") or {}).get("evaluation")
        return (
            models.get("source", {}).get("spec"),
            models.get("target", {}).get("spec", "?"),
            {k: _cell(k, v) for k, v in {**hyper, "dtype": dtype}.items() if k in HYPER_KEYS and v is not None},
        )
    args = config.get("model_args") or {}
    if isinstance(args, str):
        args = dict(kv.split("=", 1) for kv in args.split(",") if "=" in kv)
    pretrained = str(args.get("pretrained", config.get("model", "?")))
    return None, _model_name(pretrained), _engine_dtype(args.get("dtype"), pretrained)


def _engine_dtype(dtype: Any, pretrained: str) -> dict[str, str]:
    """An lm-eval `hf`/`vllm` run's evaluation dtype as our records name it: canonical, with `auto` (or none given)
    read from the checkpoint's config when it is on this machine (a local folder, the Hub cache); empty when it
    cannot be told offline."""
    from unlock_eval.models import DTYPE_ALIASES, EMBEDDED_MODELS, checkpoint_dtype, resolve_model

    name = DTYPE_ALIASES.get(str(dtype).replace("torch.", ""), None) if dtype not in (None, "") else "auto"
    if name == "auto" and pretrained in EMBEDDED_MODELS:
        name = "float32"  # `pretrained=gemma3-270m`: its converted copy, float32
    if name == "auto":
        try:
            name = checkpoint_dtype(resolve_model(pretrained, convert=False)) if Path(pretrained).is_dir() else None
        except Exception:  # noqa: BLE001 - a folder that is gone or unreadable: the dtype is unknown
            name = None
        name = name or _cached_hub_dtype(pretrained)
    return {} if name in (None, "auto") else {"dtype": name}


def _cached_hub_dtype(repo_id: str) -> str | None:
    """`auto` for a hub id, read from its config.json in the local Hub cache (never downloaded)."""
    from huggingface_hub import try_to_load_from_cache

    from unlock_eval.models import config_dtype

    try:
        path = try_to_load_from_cache(repo_id, "config.json")
        return config_dtype(json.loads(Path(path).read_text())) if isinstance(path, str) else None
    except Exception:  # noqa: BLE001 - not a hub id, or an unreadable cached config: unknown
        return None


def _model_name(pretrained: str) -> str:
    """A converted GGUF folder of our cache reads as the model it came from (an embedded name, or the .gguf file),
    so `--model hf` on it and `--model unlock target=gemma3-270m` name the same target."""
    marker = Path(pretrained) / "unlock_eval_source.json"
    if not marker.is_file():
        return pretrained
    from unlock_eval.models import EMBEDDED_MODELS

    gguf = Path(json.loads(marker.read_text()).get("gguf_file", "")).name
    return next((name for name, info in EMBEDDED_MODELS.items() if info.file == gguf), gguf or pretrained)


def _read_results(file: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    """A results_*.json file's data, config and per-task results; raises on a truncated or foreign file."""
    data = json.loads(file.read_text(encoding="utf-8"))
    config, results = data["config"], data["results"]
    parts = (config, results, *(data.get(key) or {} for key in ("groups", "configs", "group_subtasks")))
    if not all(isinstance(part, dict) for part in parts):
        raise TypeError("config, results, groups, configs and group_subtasks must be JSON objects")
    tasks = {**(data.get("groups") or {}), **results}
    if not all(isinstance(values, dict) for values in tasks.values()):
        raise TypeError("each task's results must be a JSON object")
    float(data.get("date") or 0)  # a date that is no number: not lm-eval's
    return data, config, results


def load_runs(paths: list[str | Path]) -> tuple[list[Run], list[str]]:
    """Runs from result files (merged per configuration, latest wins) and the report's footnotes."""
    runs: dict[str, Run] = {}
    notes: list[str] = []
    read: dict[Path, list | None] = {}  # samples files read so far
    for file in result_files(paths):
        try:
            data, config, results = _read_results(file)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("report: skipping %s: not an lm-eval results file (%s)", file, exc)
            continue
        method = method_of(config)
        if method is None:
            model = config.get("model")
            logger.warning("report: skipping %s: model %r is not one unlock-eval can classify", file, model)
            continue
        source, target, hyper = _identity(config)
        stamp = file.stem.removeprefix("results_")
        configs, subtasks = data.get("configs") or {}, data.get("group_subtasks") or {}
        for task, task_results in {**(data.get("groups") or {}), **results}.items():
            main = main_metric(task_results)
            if main is None:
                continue
            meta = (configs.get(task) or {}).get("metadata") or {}
            prompted_of = (meta.get("unlock_prompt") or {}).get("prompted_of")
            row_method, column = method, task
            if prompted_of and method == "plain":  # a prompted twin: the `prompted` row, under its locked task
                row_method, column = "prompted", prompted_of
            run = Run(row_method, source, target, hyper, config.get(RECORD_KEY))
            run = runs.setdefault(run.key, run)
            date = float(data.get("date") or file.stat().st_mtime)
            previous = run.tasks.get(column)
            if previous is not None:
                older, newer = (file, previous.source_file) if date < previous.date else (previous.source_file, file)
                notes.append(f"{run.label}: {column} ran more than once; the latest ({newer}) wins over {older}")
                if date < previous.date:
                    continue
            metric, value, stderr, metrics = main
            samples = _samples(file.parent, subtasks.get(task) or [task], stamp, column, read)
            run.tasks[column] = TaskScores(metric, value, stderr, metrics, samples, str(file), date)
            run.date = max(run.date, date)
            run.files.append(str(file))
    if not runs:
        raise ConfigError("none of the given files holds a run unlock-eval can read")
    return list(runs.values()), notes


def task_scores(results: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """Per task of a results file's `results` block its main metric, as the report picks it."""
    scores = {}
    for task, values in results.items():
        main = main_metric(values)
        if main is not None:
            scores[task] = (main[0], main[1])
    return scores


def file_scores(results_file: Path) -> tuple[dict[str, tuple[str, float]], int | None]:
    """Per task its main metric (as the report picks it), and the run's extraction forward passes (unlock runs)."""
    data = json.loads(results_file.read_text())
    scores = task_scores(data["results"])
    record = data.get("config", {}).get(RECORD_KEY) or {}
    return scores, (record.get("details") or {}).get("extraction_forward_passes")
