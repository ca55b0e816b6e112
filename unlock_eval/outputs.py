"""Output paths checked before any work (`output_file`, `output_folder`) and output files (report pages, figures, plots)
written atomically: a temp sibling named by its writer, then a rename; a killed writer's leftover goes on the next
write."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from unlock_eval.cache import remove_stale_temps, tmp_prefix
from unlock_eval.errors import ConfigError
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


def output_file(flag: str, path: str, suffixes: tuple[str, ...] = ()) -> Path:
    """A file a command is to write, checked before the command does any work: not a folder, in a folder that exists
    and is writable, and (with `suffixes`) ending in one of them; else one line naming `flag`."""
    file = Path(path).expanduser()
    if suffixes and file.suffix.lower() not in suffixes:
        raise ConfigError(f"{flag} {path}: expected a {' or '.join(suffixes)} file")
    if file.is_dir():
        raise ConfigError(f"{flag} {path}: a folder, not a file name")
    folder = file.parent
    if not folder.is_dir():
        raise ConfigError(f"{flag} {path}: no folder {folder} (create it first)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: the folder {folder} is not writable")
    return file


def output_folder(flag: str, path: str) -> Path:
    """A folder a command is to fill (created with its parents when missing), checked before any work: the path and
    its nearest existing parent are folders, and that one is writable; else one line naming `flag`."""
    folder = Path(path).expanduser()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {existing} is not writable")
    return folder
