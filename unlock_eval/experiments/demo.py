"""`unlock-eval demo` (`make demo`): the comparison on the embedded pair, end to end. Plain and prompted target,
native steering and Unlock (alpha chosen on a dev split by `unlock-eval sweep --select-on dev`) and logit-difference
transfer, scored by lm-eval on one task; then the leaderboard with paired intervals and the HTML report with plots,
diagnostics and behaviour columns."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from unlock_eval.errors import ConfigError
from unlock_eval.model_adapters.inprocess import run_lm_eval, shared_builtin_task_index
from unlock_eval.reports.html import figure_from_matplotlib, write_page
from unlock_eval.reports.runs import file_scores


@dataclass(frozen=True)
class DemoTask:
    """A locked task, its prompted twin, the template preset that tells them apart, and the extraction set."""

    prompted: str
    capability: str
    extract_from: str


TASKS = {
    "arith_unlock": DemoTask("arith_cot_unlock", "cot", "arith"),  # generated: no data set, offline
    "arith_qa_unlock": DemoTask("arith_qa_cot_unlock", "cot_qa", "arith"),
    "gsm8k_unlock": DemoTask("gsm8k_cot_unlock", "cot", "gsm8k"),  # UNLOCK_EVAL_DATA_DIR, else the Hub
    "gsm8k_qa_unlock": DemoTask("gsm8k_qa_cot_unlock", "cot_qa", "gsm8k"),
}


@dataclass(frozen=True)
class DemoRun:
    """One row group of the comparison: an lm-eval run, or (swept) an alpha grid chosen on dev, then run on test."""

    run_id: str
    label: str
    model: str
    model_args: str
    tasks: list[str]
    swept: bool = False

    def results(self, out: Path) -> Path:
        """The folder of the runs reported on the test documents (a sweep's dev runs stay out of the table)."""
        return out / self.run_id / "points" if self.swept else out / self.run_id


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The demo's flags (`unlock-eval demo`)."""
    p.add_argument("--limit", type=int, default=60, help="test documents per row (default 60: ~11 min on 2 cores)")
    p.add_argument("--task", default="arith_unlock", choices=list(TASKS), help="the locked task (default arith_unlock)")
    p.add_argument("--source", default="smollm2-135m-instruct", help="Unlock's source (default the embedded SmolLM2)")
    p.add_argument("--target", default="gemma3-270m", help="the evaluated model (default the embedded Gemma-3-270M)")
    p.add_argument(
        "--alphas", default="0.05,0.1,0.2", help="steering strengths chosen from on dev (default 0.05,0.1,0.2)"
    )
    p.add_argument("--dev-size", type=int, default=20, help="dev documents alpha is chosen on (default 20)")
    p.add_argument("--n", type=int, default=64, help="extraction prompts (default 64)")
    p.add_argument("--k", type=int, default=16, help="subspace rank (default 16)")
    p.add_argument("--lam", type=float, default=1.0, help="logit-transfer weight (default 1.0)")
    p.add_argument("--max-gen-toks", type=int, default=48, help="answer length cap in tokens (default 48)")
    p.add_argument("--batch-size", type=int, default=8, help="lm-eval batch size (default 8)")
    p.add_argument("--device", help="lm-eval --device (default: lm-eval's choice, cuda when present)")
    p.add_argument("--output", default="demo_results", help="results and report folder (default demo_results)")
    p.add_argument("--cache-dir", help="artifact cache (default: UNLOCK_EVAL_CACHE_DIR or the user cache)")
    p.add_argument("--use_cache", help="lm-eval's response cache (sqlite path): a rerun then skips generation")


def plan(args: argparse.Namespace) -> list[DemoRun]:
    """The runs of the comparison (the plain and prompted target share one run: one model load)."""
    from unlock_eval.model_adapters.arguments import resolve_role

    task = TASKS[args.task]
    cache = [f"cache_dir={args.cache_dir}"] if args.cache_dir else []
    steer = [f"n={args.n}", f"k={args.k}", f"capability={task.capability}", f"extract_from={task.extract_from}"]
    target = resolve_role("target", args.target, None, args.cache_dir).pretrained  # a converted folder for a GGUF
    native = ",".join([f"target={args.target}", *steer, *cache])
    unlock = ",".join([f"source={args.source}", f"target={args.target}", *steer, *cache])
    logit = ",".join([f"target={args.target}", f"lam={args.lam:g}", f"capability={task.capability}", *cache])
    return [
        DemoRun("plain", "plain and prompted target", "hf", f"pretrained={target},dtype=float32",
                [args.task, task.prompted]),
        DemoRun("native", "native steering (the target's own key)", "unlock", native, [args.task], swept=True),
        DemoRun("unlock", f"Unlock ({args.source} -> {args.target})", "unlock", unlock, [args.task], swept=True),
        DemoRun("logit", "logit-difference transfer (prompt-induced, the target as its own source)",
                "logit_transfer", logit, [args.task]),
    ]  # fmt: skip


class Demo:
    def __init__(self, args: argparse.Namespace):
        for name in ("limit", "dev_size", "n", "k", "max_gen_toks", "batch_size"):
            if getattr(args, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}={getattr(args, name)}: expected an integer >= 1")
        if args.source == args.target:
            raise ConfigError(
                f"--source={args.source}: the same model as --target; Unlock transfers from another model "
                "(the target's own key is already the native-steering row)"
            )
        from unlock_eval.experiments.grid import build_grid
        from unlock_eval.methods.unlock.spec import UnlockSpec

        task = TASKS[args.task]  # every steering argument checked now, before a model loads: one line, not a run
        UnlockSpec(target=args.target, source=args.source, n=args.n, k=args.k, capability=task.capability,
                   extract_from=task.extract_from, cache_dir=args.cache_dir)  # fmt: skip
        common = f"n={args.n},k={args.k},capability={task.capability},extract_from={task.extract_from}"
        build_grid(f"target={args.target},source={args.source},{common}", args.alphas, None, None)
        self.args, self.out = args, Path(args.output).expanduser()
        self.reused: list[str] = []
        self.chosen: dict[str, str] = {}

    def log(self, message: str) -> None:
        print(f"demo: {message}", file=sys.stderr, flush=True)

    def models(self) -> None:
        """Say which embedded/GGUF models are converted already (reused) and which convert now (once)."""
        from unlock_eval.models import conversion_cached

        for spec in (self.args.target, self.args.source):
            cached = conversion_cached(spec, self.args.cache_dir)
            if cached:
                self.reused.append(f"converted model {spec}")
                self.log(f"{spec}: converted model in the cache, reused")
            elif cached is not None:
                self.log(
                    f"{spec}: not in the cache yet: converted once from GGUF when first loaded (later runs reuse it)"
                )

    def flags(self) -> list[str]:
        """lm-eval flags every run shares."""
        flags = ["--batch_size", str(self.args.batch_size), "--gen_kwargs", f"max_gen_toks={self.args.max_gen_toks}"]
        flags += ["--device", self.args.device] if self.args.device else []
        return flags + (["--use_cache", self.args.use_cache] if self.args.use_cache else [])

    def run(self, i: int, runs: list[DemoRun], run: DemoRun) -> None:
        folder = self.out / run.run_id
        shutil.rmtree(folder, ignore_errors=True)  # this run's results only: the report reads every file it finds
        head = f"[{i}/{len(runs)}] {run.label}"
        t0 = time.perf_counter()
        if run.swept:
            self.sweep(head, run, folder)
        else:
            argv = ["--model", run.model, "--model_args", run.model_args, "--tasks", ",".join(run.tasks)]
            argv += ["--limit", str(self.args.limit), "--log_samples", "--output_path", str(folder), *self.flags()]
            self.log(f"{head}: lm_eval {' '.join(argv)}")
            with contextlib.redirect_stdout(sys.stderr):  # lm-eval's tables: stdout is the leaderboard's
                run_lm_eval(argv)
        files = sorted(run.results(self.out).rglob("results_*.json"))
        if len(files) != 1:
            raise ConfigError(
                f"{run.label}: expected one results file under {run.results(self.out)}, found {len(files)}"
            )
        scores, _ = file_scores(files[0])
        summary = ", ".join(f"{task} {metric} {value:.3f}" for task, (metric, value) in scores.items())
        passes = [p for p in (file_scores(f)[1] for f in folder.rglob("results_*.json")) if p is not None]
        extra = f"; {sum(passes)} extraction forward passes" if passes else ""
        if passes and sum(passes) == 0:
            extra += ": cached key and map reused"
            self.reused.append(f"the extraction artifacts of {run.run_id}")
        self.log(f"{head}: {summary} ({time.perf_counter() - t0:.0f} s{extra})")

    def sweep(self, head: str, run: DemoRun, folder: Path) -> None:
        """alpha chosen on dev documents, then the chosen point run once on the test documents (reports.sweep)."""
        from unlock_eval.experiments.sweep import Sweep, parse

        argv = ["--model_args", run.model_args, "--tasks", ",".join(run.tasks), "--alphas", self.args.alphas]
        argv += ["--select-on", "dev", "--dev-size", str(self.args.dev_size), "--limit", str(self.args.limit)]
        argv += ["--no-baseline", "--output_path", str(folder), *self.flags()]
        self.log(f"{head}: unlock-eval sweep {' '.join(argv)}")
        args, passthrough = parse(argv)
        with contextlib.redirect_stdout(sys.stderr):
            Sweep(args, passthrough).run()
        chosen = json.loads((folder / "sweep.json").read_text())["chosen"]["point"]
        self.chosen[run.run_id] = chosen
        self.log(f"{head}: {chosen} chosen on {self.args.dev_size} dev documents")

    def diagnostics(self):
        """The transfer's per-layer diagnostics from the states the Unlock run cached (no forward pass)."""
        from unlock_eval.methods.unlock.diagnostics import run_diagnosis
        from unlock_eval.methods.unlock.spec import UnlockSpec
        from unlock_eval.reports.diagnostics_table import format_diagnosis
        from unlock_eval.reports.plots import diagnosis_figure

        task = TASKS[self.args.task]
        spec = UnlockSpec(target=self.args.target, source=self.args.source, capability=task.capability,
                          n=self.args.n, k=self.args.k, extract_from=task.extract_from,
                          cache_dir=self.args.cache_dir)  # fmt: skip
        diagnosis = run_diagnosis(spec, progress=False)
        caption = f"{self.args.source} → {self.args.target}: diagnostics per layer"
        return format_diagnosis(diagnosis), figure_from_matplotlib(diagnosis_figure(diagnosis), "diagnostics", caption)

    def main(self) -> int:
        from lm_eval.utils import setup_logging

        from unlock_eval.reports import report
        from unlock_eval.reports.formats import render
        from unlock_eval.reports.plots import report_figures

        setup_logging()
        t0 = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        self.models()
        runs = plan(self.args)
        with shared_builtin_task_index():
            for i, run in enumerate(runs, 1):
                self.run(i, runs, run)
        table = report([run.results(self.out) for run in runs])
        for i, row in enumerate(table.rows):
            if row.method in ("native_steering", "unlock"):
                table.marks[i] = "alpha chosen on dev"
        table.notes += self.notes() + scoring_notes(table)
        diagnosis_text, diagnosis_figure = self.diagnostics()
        sections = [("Diagnostics of the Unlock transfer (unlock-eval diagnose)", diagnosis_text)]
        figures = report_figures(table) + [diagnosis_figure]
        write_page(self.out / "report.md", render(table, "md", sections=sections))
        html_page = render(table, "html", figures, title="unlock-eval demo: methods compared", sections=sections)
        write_page(self.out / "report.html", html_page)
        print(render(table, "md"))
        print(diagnosis_text.splitlines()[-2])  # the verdict line
        reused = "; ".join(self.reused) if self.reused else "nothing (a cold cache: everything was built once)"
        self.log(f"reused from the cache: {reused}")
        self.log(f"report: {self.out / 'report.html'} (and report.md); {time.perf_counter() - t0:.0f} s in all")
        return 0

    def notes(self) -> list[str]:
        a, n = self.args, self.args.limit
        task = TASKS[a.task]
        notes = [
            f"{n} documents per row: the 95% intervals are wide (one document moves accuracy by {100 / n:.1f} "
            "points); a Δ whose interval contains 0 is not evidence of a difference. Raise --limit (make demo "
            "LIMIT=...) to narrow them.",
            f"native_steering and unlock: alpha chosen among {a.alphas.replace(',', ', ')} on {a.dev_size} dev "
            f"documents ({a.task}'s train split, outside the {a.n} extraction prompts; `unlock-eval sweep --select-on "
            f"dev`), then scored once on the documents here (chosen: native {self.chosen.get('native')}; unlock "
            f"{self.chosen.get('unlock')}; the dev tables: native/dev/report.md, unlock/dev/report.md). n={a.n}, "
            f"k={a.k}, lam={a.lam:g}, the {task.capability} preset and the {a.max_gen_toks}-token answer cap are "
            "fixed, not tuned.",
        ]
        if a.lam == 1:
            notes.append(
                "logit_transfer with the target as its own source and lam=1 is the prompted target by construction "
                "(locked logits + (unlocked − locked) = unlocked logits): equal rows check the harness, not the "
                "method; --lam 0.5 sits between the two."
            )
        from unlock_eval.models import EMBEDDED_MODELS

        if {a.source, a.target} & set(EMBEDDED_MODELS):
            notes.append(
                "The embedded models are tiny (SmolLM2-135M, Gemma-3-270M); the paper's effects were shown on 4B-14B "
                "models. This demo shows the harness end to end, not the size of the effect."
            )
        return notes


def scoring_notes(table) -> list[str]:
    """What the strict and chance columns say of the whole table: a target on the floor, rows at chance."""
    notes = []
    for column in table.checked_columns:
        scored = {i: table.scoring[(i, column)] for i in range(len(table.rows)) if (i, column) in table.scoring}
        if scored and all(s.strict == 0 for s in scored.values()):
            notes.append(
                f"{column}: no row gives a single answer in the format the prompt asks for (strict accuracy 0 on "
                "every row): the target is on the floor on strict accuracy here, and every lenient hit came from a "
                "fallback rule; read the lenient column against its chance level."
            )
        at_chance = [table.rows[i].method for i, s in scored.items() if s.at_chance]
        if at_chance:
            notes.append(f"{column}: lenient accuracy within its chance range (marked ≈): {', '.join(at_chance)}.")
    return notes
