"""Report scripts: leaderboard tables with paired statistics, plots and an HTML page, built from lm-eval result
files (results["config"]["unlock_eval"] records each run's method). The engine never imports this package."""

from __future__ import annotations

import logging

# A line per slow step (reading, tokenizers, statistics, figures) so that `unlock-eval report` never works for long
# without a word: at INFO, shown by the CLI's log handler (its root level is WARNING); quiet it with
# logging.getLogger("unlock_eval.reports.progress").setLevel(logging.WARNING).
progress = logging.getLogger("unlock_eval.reports.progress")
progress.setLevel(logging.INFO)


def report(paths, baseline: str | None = None):
    """The comparison Table (reports.table.Table) of the lm-eval result files and folders in `paths`."""
    from unlock_eval.reports.runs import load_runs, result_files
    from unlock_eval.reports.table import build_table

    files = result_files(list(paths))
    progress.info("report: reading %d results file%s and their samples", len(files), "" if len(files) == 1 else "s")
    runs, notes = load_runs(files)
    return build_table(runs, notes, baseline)
