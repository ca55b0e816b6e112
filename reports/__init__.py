"""Report scripts: leaderboard tables with paired statistics, plots and an HTML page, built from lm-eval result
files (results["config"]["unlock_eval"] records each run's method). The engine never imports this package."""

from __future__ import annotations


def report(paths, baseline: str | None = None):
    """The comparison Table (reports.table.Table) of the lm-eval result files and folders in `paths`."""
    from unlock_eval.reports.runs import load_runs
    from unlock_eval.reports.table import build_table

    runs, notes = load_runs(list(paths))
    return build_table(runs, notes, baseline)
