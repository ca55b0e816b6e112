"""Honest selection for sweeps: dev-split twins of the evaluated tasks (lm-eval YAMLs that `include:` the task and
ask its loader for a selection split, unlock_eval.data.splits), and the choice of the best grid point on them.

A task whose data set has a train split gets a `<task>_dev` twin drawn from train, minus the extraction prompts;
the reported evaluation is the task itself. A task with a test split only (MATH-500, AGIEval) gets a `<task>_dev`
twin drawn from a seeded slice of test and a `<task>_heldout` twin (test without that slice) for the reported
evaluation. The YAMLs are written into the sweep's folder and passed to lm-eval with `--include_path`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from unlock_eval.errors import ConfigError

# our tasks' loaders (tasks/utils.py) -> the split a dev slice is drawn from
DEV_SOURCE = {
    "load_gsm8k": "train",
    "load_arith": "train",
    "load_math": "train",
    "load_math500": "test",
    "load_agieval_math": "test",
    "load_agieval_sat_math": "test",
}


@dataclass
class SelectionTasks:
    """Task names to select on (`dev`) and to report (`report`), what each dev slice is, and their YAML folder."""

    dev: list[str] = field(default_factory=list)
    report: list[str] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)
    folder: Path | None = None


def _task_config(name: str, index) -> tuple[Path, dict]:
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = index.get(name)
    if entry is None:
        raise ConfigError(f"--tasks: unknown task {name!r}")
    if entry.kind not in (Kind.TASK,) or entry.yaml_path is None:
        raise ConfigError(
            f"--select-on dev: {name} is a {entry.kind.name.lower()}; list its tasks one by one (selection draws a "
            "dev slice per task)"
        )
    return Path(entry.yaml_path), load_yaml(entry.yaml_path, resolve_func=False)


def write_selection_tasks(
    tasks: list[str], folder: Path, size: int, seed: int, extract_from: str, n: int, index
) -> SelectionTasks:
    """Write the dev (and held-out) twins of `tasks` into `folder`; `index` is a TaskManager's task index."""
    folder.mkdir(parents=True, exist_ok=True)
    out = SelectionTasks(folder=folder)
    for name in tasks:
        path, config = _task_config(name, index)
        loader = str(config.get("custom_dataset", "")).rsplit(".", 1)[-1]
        if loader not in DEV_SOURCE:
            raise ConfigError(
                f"--select-on dev: {name} does not load its documents through unlock-eval's data loaders, so no dev "
                f"slice can be drawn from it; supported: the *_unlock tasks (GSM8K, MATH subjects, MATH-500, AGIEval)"
            )
        source = DEV_SOURCE[loader]
        select = {"source": source, "size": size, "seed": seed, "extract_from": extract_from, "n": n}
        kwargs = dict(config.get("dataset_kwargs") or {})
        twins = {f"{name}_dev": {"test_split": "dev", "unlock_select": {"role": "dev", **select}}}
        if source == "test":
            twins[f"{name}_heldout"] = {"unlock_select": {"role": "heldout", **select}}
        for twin, settings in twins.items():
            body = {
                "include": str(path),
                "task": twin,
                "dataset_kwargs": {**kwargs, "unlock_select": settings.pop("unlock_select")},
            }
            body.update(settings)
            text = f"# {twin}: written by unlock-eval sweep --select-on dev (see unlock_eval/splits.py)\n"
            (folder / f"{twin}.yaml").write_text(text + yaml.safe_dump(body, sort_keys=False))
        out.dev.append(f"{name}_dev")
        out.report.append(f"{name}_heldout" if source == "test" else name)
        where = (
            f"{size} documents of its test split (seed {seed}), left out of the reported {name}_heldout"
            if source == "test"
            else f"{size} documents of its train split (seed {seed}) that are not among the n={n} extraction prompts"
        )
        out.descriptions.append(f"{name}_dev: {where}")
    return out


def choose(scores: dict[str, dict[str, float]]) -> tuple[str, int]:
    """The point with the highest mean main metric over the dev tasks (ties: the first in run order), and how many
    points share that mean."""
    means = {point: sum(values.values()) / len(values) for point, values in scores.items() if values}
    if not means:
        raise ConfigError("--select-on dev: no grid point produced a dev score")
    best = max(means.values())
    tied = [point for point, mean in means.items() if mean == best]
    return tied[0], len(tied)
