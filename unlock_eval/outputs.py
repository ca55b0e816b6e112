"""Output files (report pages, figures, plots) written atomically: a temp sibling named by its writer, then a rename;
what a killed writer left beside the file is removed by the next write."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from unlock_eval.cache import remove_stale_temps, tmp_prefix
from unlock_eval.faults import crash_point


def write_atomic(path: str | os.PathLike, data: bytes | str, stage: str = "report_write") -> Path:
    """Write `data` (text as UTF-8) to `path` so that readers never see half a file; world-readable (0644)."""
    path = Path(path)
    remove_stale_temps(path.parent, lambda final: None)  # dead writers' leftovers (a live writer's are kept)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=tmp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; an output is meant to be read
        crash_point(stage, path.suffix.lstrip("."))  # fault tests: killed with the file written, not renamed
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
