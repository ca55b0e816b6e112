"""Crash points for the fault-injection tests: `crash_point(stage)` SIGKILLs this process when UNLOCK_EVAL_CRASH_AT
names the stage (`stage` or `stage:detail`, e.g. `artifact_write:masterkey`); a no-op otherwise."""

from __future__ import annotations

import os
import signal

ENV = "UNLOCK_EVAL_CRASH_AT"
STAGES = ("convert", "capture", "artifact_write", "map_fit", "merge", "sweep_point", "report_write")


def crash_point(stage: str, detail: str | None = None) -> None:
    """Die here, as a killed job would (no cleanup, no exception handlers), if this stage is the one asked for."""
    wanted = os.environ.get(ENV)
    if wanted and wanted in (stage, f"{stage}:{detail}"):
        os.kill(os.getpid(), signal.SIGKILL)
