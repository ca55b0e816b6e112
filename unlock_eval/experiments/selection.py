"""Selection for sweeps: selection twins of the evaluated tasks (lm-eval YAMLs that `include:` the task and ask its
loader for a selection split, unlock_eval.data.splits), and the choice of the best grid point on them.

`--select-on dev` (honest): a task whose data set has a train split gets a `<task>_dev` twin drawn from train, minus
the extraction prompts; the reported evaluation is the task itself. A task with a test split only (MATH-500,
AGIEval) gets a `<task>_dev` twin drawn from a seeded slice of test and a `<task>_heldout` twin (test without that
slice) for the reported evaluation.

`--select-on train_head` (the paper's grid searches): a `<task>_head` twin, the first `size` rows of the train split
in file order, none of them an extraction prompt (refused otherwise); the reported evaluation is the task itself, in
full. A task with a test split only has no train split: the reference's loader then reads the test file instead
(data_loader.py), so the twin is the first `size` rows of test, which the report includes: that choice is marked
optimistic.

The YAMLs are written into the sweep's folder and passed to lm-eval with `--include_path`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from unlock_eval.errors import ConfigError

MODES = ("dev", "train_head")

# our tasks' loaders (tasks/utils.py) -> the split a dev slice (or a head) is drawn from. A head from test is the
# reference's own fallback for a data set without train.jsonl (data_loader.py: {split}.jsonl, else test.jsonl).
DEV_SOURCE = {
    "load_gsm8k": "train",
    "load_arith": "train",
    "load_math": "train",
    "load_math500": "test",
    "load_agieval_math": "test",
    "load_agieval_sat_math": "test",
}
# the data set each loader reads, for the selection's description
DATA_NAMES = {
    "load_gsm8k": "GSM8K",
    "load_arith": "arith",
    "load_math": "MATH",
    "load_math500": "MATH-500",
    "load_agieval_math": "AGIEval Math",
    "load_agieval_sat_math": "AGIEval SAT-Math",
}


@dataclass
class SelectionTasks:
    """Task names to select on (`dev`) and to report (`report`), what each selection twin is, the reported tasks that
    include their twin's rows (`optimistic`: a head of test), and their YAML folder."""

    dev: list[str] = field(default_factory=list)
    report: list[str] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)
    optimistic: list[str] = field(default_factory=list)
    folder: Path | None = None


def _task_config(name: str, index, mode: str = "dev") -> tuple[Path, dict]:
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = index.get(name)
    if entry is None:
        raise ConfigError(f"--tasks: unknown task {name!r}")
    if entry.kind not in (Kind.TASK,) or entry.yaml_path is None:
        raise ConfigError(
            f"--select-on {mode}: {name} is a {entry.kind.name.lower()}; list its tasks one by one (selection draws "
            "its documents per task)"
        )
    return Path(entry.yaml_path), load_yaml(entry.yaml_path, resolve_func=False)


def write_selection_tasks(
    tasks: list[str],
    folder: Path,
    size: int,
    seed: int | None,
    extract_from: str,
    n: int,
    index,
    mode: str = "dev",
) -> SelectionTasks:
    """Write the selection twins of `tasks` into `folder` (`mode` dev: dev and held-out twins; train_head: head
    twins, their rows checked here, before any run); `index` is a TaskManager's task index."""
    if mode not in MODES:
        raise ConfigError(f"--select-on {mode}: allowed {', '.join(MODES)}")
    folder.mkdir(parents=True, exist_ok=True)
    out = SelectionTasks(folder=folder)
    for name in tasks:
        path, config = _task_config(name, index, mode)
        loader = str(config.get("custom_dataset", "")).rsplit(".", 1)[-1]
        if loader not in DEV_SOURCE:
            raise ConfigError(
                f"--select-on {mode}: {name} does not load its documents through unlock-eval's data loaders, so no "
                "selection split can be drawn from it; supported: the *_unlock tasks (GSM8K, MATH subjects, MATH-500, "
                "AGIEval)"
            )
        source = DEV_SOURCE[loader]
        kwargs = dict(config.get("dataset_kwargs") or {})
        if mode == "train_head":
            select = {"role": "head", "source": source, "size": size, "extract_from": extract_from, "n": n}
            rows = _check_head(name, loader, kwargs, select)
            twins = {f"{name}_head": {"test_split": "head", "unlock_select": select}}
        else:
            select = {"source": source, "size": size, "seed": seed, "extract_from": extract_from, "n": n}
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
            text = f"# {twin}: written by unlock-eval sweep --select-on {mode} (see unlock_eval/data/splits.py)\n"
            (folder / f"{twin}.yaml").write_text(text + yaml.safe_dump(body, sort_keys=False))
        out.dev.extend(twin for twin in twins if not twin.endswith("_heldout"))
        if mode == "train_head":
            out.report.append(name)
            data = DATA_NAMES[loader] + (f" {kwargs['unlock_subject']}" if kwargs.get("unlock_subject") else "")
            if source == "test":
                out.optimistic.append(name)
                where = (
                    f"the first {size} rows of {data} test in file order ({data} has no train split: the reference "
                    f"then reads its test file), all of them also in the reported {name}: optimistic"
                )
            else:
                where = (
                    f"the first {size} rows of {data} train in file order (of {rows}), none among the n={n} "
                    "extraction prompts"
                )
            out.descriptions.append(f"{name}_head: {where}")
            continue
        out.report.append(f"{name}_heldout" if source == "test" else name)
        where = (
            f"{size} documents of its test split (seed {seed}), left out of the reported {name}_heldout"
            if source == "test"
            else f"{size} documents of its train split (seed {seed}) that are not among the n={n} extraction prompts"
        )
        out.descriptions.append(f"{name}_dev: {where}")
    return out


def _check_head(name: str, loader: str, kwargs: dict, select: dict) -> int:
    """Load the head twin's documents as lm-eval will (the task's own loader, its dataset_kwargs): a head that does
    not fit its split or shares a row with the extraction prompts stops the sweep here, in one line. The rows of the
    split the head is drawn from."""
    from unlock_eval.tasks import utils

    try:
        dataset = getattr(utils, loader)(**kwargs, unlock_select=select)
    except ConfigError as err:
        raise ConfigError(f"--select-on train_head: {name}: {err}") from None
    return len(dataset[select["source"]])


def choose(scores: dict[str, dict[str, float]]) -> tuple[str, int]:
    """The point with the highest mean main metric over the dev tasks (ties: the first in run order), and how many
    points share that mean."""
    means = {point: sum(values.values()) / len(values) for point, values in scores.items() if values}
    if not means:
        raise ConfigError("--select-on: no grid point produced a selection score")
    best = max(means.values())
    tied = [point for point, mean in means.items() if mean == best]
    return tied[0], len(tied)
