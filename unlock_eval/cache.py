"""Content-addressed artifacts on disk: safetensors files with JSON metadata, atomic writes, file locks."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from unlock_eval.errors import ConfigError

FORMAT_VERSION = 1
_META_KEY = "unlock_eval"
logger = logging.getLogger(__name__)


class CorruptArtifactError(ConfigError):
    """An artifact file exists but cannot be read back or fails its checksum (the cache rebuilds such files)."""


def default_cache_dir() -> Path:
    """`UNLOCK_EVAL_CACHE_DIR` if set, else the platform's user cache directory."""
    env = os.environ.get("UNLOCK_EVAL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("unlock-eval"))


def mark_used(path: str | os.PathLike) -> None:
    """Set the mtime of a cache file or directory to now: `cache list`/`prune` read it as "last used"."""
    try:
        os.utime(path)
    except OSError:  # a read-only (shared) cache keeps working; only its "last used" goes stale
        pass


def fingerprint(parts: dict[str, Any]) -> str:
    """Stable sha256 (hex, 24 chars) of a JSON-serialisable description."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes, dtypes and bytes of the tensors (order-independent)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_artifact(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> str:
    """Write tensors + metadata to one safetensors file atomically; returns the content checksum."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    checksum = tensors_checksum(tensors)
    meta = dict(metadata)
    meta["format_version"] = FORMAT_VERSION
    meta["checksum"] = checksum
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_META_KEY: json.dumps(meta, sort_keys=True, default=str)})
        _make_shareable(tmp)  # after writing: safetensors may recreate the file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return checksum


def _current_umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _current_umask()  # read once at import: os.umask is process-wide and not thread-safe to probe


def _make_shareable(path: str | os.PathLike) -> None:
    """mkstemp files are private (0600); give them the mode a normal file would get under the umask."""
    os.chmod(path, 0o666 & ~_UMASK)


def load_artifact(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read an artifact written by `save_artifact`: its tensors and the metadata it was saved with (the format
    version and checksum are verified and removed). Raises CorruptArtifactError when it is damaged."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"artifact not found: {path}")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except PermissionError:
        raise  # unreadable is not corrupt: never delete someone else's good artifact
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CorruptArtifactError(f"{path}: not a readable safetensors file ({exc})") from exc
    if raw is None:
        raise CorruptArtifactError(f"{path}: no '{_META_KEY}' metadata; not an unlock-eval artifact")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CorruptArtifactError(f"{path}: metadata is not valid JSON ({exc})") from exc
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CorruptArtifactError(f"{path}: format_version {version!r}, this unlock-eval reads {FORMAT_VERSION}")
    if tensors_checksum(tensors) != meta.pop("checksum", None):
        raise CorruptArtifactError(f"{path}: checksum mismatch (truncated or modified file)")
    meta.pop("format_version")
    return tensors, meta


class ArtifactCache:
    """A directory of content-addressed artifacts: `<root>/<kind>/<key>.safetensors`.

    `get_or_build` takes a per-artifact file lock so concurrent processes compute an artifact once;
    counters record hits and builds so callers (and tests) can see what was reused.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.hits = 0
        self.builds = 0
        self.rebuilt_corrupt = 0

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.safetensors"

    @contextmanager
    def lock(self, kind: str, key: str, timeout: float = -1) -> Iterator[None]:
        lock_path = self.root / "locks" / f"{kind}-{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock_path), timeout=timeout):
            yield

    def _try_load(self, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        if not path.is_file():
            return None
        try:
            return load_artifact(path)
        except CorruptArtifactError as exc:
            logger.warning("unlock-eval cache: %s; rebuilding it", exc)
            self.rebuilt_corrupt += 1
            path.unlink(missing_ok=True)
            return None

    def get_or_build(
        self,
        kind: str,
        key: str,
        build: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]],
        accept: Callable[[dict[str, torch.Tensor], dict[str, Any]], bool] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Load `<kind>/<key>` if present and intact, else build it under a lock and store it. With `accept`, a
        stored artifact it rejects (one that holds too little, e.g. bases for a smaller k) is rebuilt and replaced.
        """
        path = self.path(kind, key)
        found = self._try_load(path)
        if found is not None and (accept is None or accept(*found)):
            self.hits += 1
            mark_used(path)
            return found
        with self.lock(kind, key):
            found = self._try_load(path)  # another process may have built it while we waited
            if found is not None and (accept is None or accept(*found)):
                self.hits += 1
                mark_used(path)
                return found
            tensors, meta = build()
            save_artifact(path, tensors, meta)
            self.builds += 1
            return load_artifact(path)


def atomic_directory(final: Path, fill: Callable[[Path], None]) -> Path:
    """Create directory `final` by filling a temporary sibling and renaming it into place."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".", suffix=".tmp", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        fill(tmp)
        if final.exists():  # someone else finished first; keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def file_sha256(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None, chunk: int = 1 << 22) -> str:
    """sha256 of a file's content, memoised under `cache_dir` (default: the default cache) by (path, size, mtime)
    so big files hash once."""
    path = Path(path).resolve()
    st = path.stat()
    memo_dir = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "file-hashes"
    memo = memo_dir / (fingerprint({"p": str(path), "s": st.st_size, "m": st.st_mtime_ns}) + ".sha256")
    if memo.is_file():
        value = memo.read_text().strip()
        if len(value) == 64:
            return value
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    try:
        memo_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=memo_dir, suffix=".tmp")
        _make_shareable(tmp)
        with os.fdopen(fd, "w") as f:
            f.write(digest)
        os.replace(tmp, memo)
    except OSError:  # a read-only cache only costs a re-hash next time
        pass
    return digest
