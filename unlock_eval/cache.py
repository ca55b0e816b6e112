"""Content-addressed artifacts on disk: safetensors files with JSON metadata, atomic writes, file locks."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from unlock_eval.errors import ConfigError
from unlock_eval.faults import crash_point

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


def cache_root(cache_dir: str | os.PathLike | None = None, arg: str = "cache_dir") -> Path:
    """The cache directory to use: `cache_dir` (given as `arg`), else `default_cache_dir()`. It may be missing or
    read-only (a warm read-only cache works); one that cannot be a directory is a ConfigError naming where it came
    from."""
    if cache_dir is not None:
        source = f"{arg}={cache_dir}"
        if not str(cache_dir).strip():
            raise ConfigError(f"{arg} is empty: give the cache directory")
    elif os.environ.get("UNLOCK_EVAL_CACHE_DIR"):
        source = f"UNLOCK_EVAL_CACHE_DIR={os.environ['UNLOCK_EVAL_CACHE_DIR']}"
    else:
        source = "the default cache directory"
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    existing = next((p for p in (root, *root.parents) if p.exists() or p.is_symlink()), None)
    if existing is not None and not existing.is_dir():
        what = "a file" if existing.is_file() else "not a directory"
        flag = arg if arg.startswith("-") else f"{arg}=, --cache-dir"
        raise ConfigError(
            f"{source}: {existing} is {what}; give a directory for the cache ({flag} or UNLOCK_EVAL_CACHE_DIR)"
        )
    return root


def mark_used(path: str | os.PathLike) -> None:
    """Set the mtime of a cache file or directory to now: `cache list`/`prune` read it as "last used"."""
    try:
        os.utime(path)
    except OSError:  # a read-only (shared) cache keeps working; only its "last used" goes stale
        pass


# ------------------------------------------------------------------ temporary entries, locks, read-only caches

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TMP_NAME = re.compile(r"^(?P<final>.+)\.(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[^.]*\.tmp$")


def tmp_prefix(final_name: str) -> str:
    """The name prefix of a temporary sibling of `final_name` (`<final>.<pid>-<host>-<random>.tmp`): it names its
    writer, so that the leftovers of a writer that died can be told from those of one still writing."""
    return f"{final_name}.{os.getpid()}-{_HOST}-"


def tmp_writer(name: str) -> tuple[str, int, bool] | None:
    """(final name, writer pid, whether that writer is gone) of a temporary entry named by `tmp_prefix`; None for
    any other name. Gone: a process of this host that no longer runs (a writer on another host is never gone)."""
    found = _TMP_NAME.match(name)
    if found is None:
        return None
    pid = int(found["pid"])
    return found["final"], pid, found["host"] == _HOST and not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; or not a pid at all
        return True
    return True


def _lock_free(path: Path | None) -> bool:
    if path is None or not path.exists():
        return True
    try:
        FileLock(str(path)).acquire(timeout=0).lock.release()
    except (Timeout, OSError):
        return False
    return True


def remove_stale_temps(directory: Path, lock_of: Callable[[str], Path | None]) -> list[Path]:
    """Remove the temporary entries in `directory` whose writer is gone (`tmp_writer`) and whose final entry's lock
    (`lock_of(final name)`; None: the caller holds it) is free. Entries of a live writer are never touched."""
    removed = []
    for tmp in sorted(directory.glob("*.tmp")) if directory.is_dir() else []:
        writer = tmp_writer(tmp.name)
        if writer is None or not writer[2] or not _lock_free(lock_of(writer[0])):
            continue
        try:
            shutil.rmtree(tmp) if tmp.is_dir() and not tmp.is_symlink() else tmp.unlink()
        except OSError:
            continue
        removed.append(tmp)
    if removed:
        names = ", ".join(p.name for p in removed)
        logger.warning("unlock-eval cache: removed what crashed writers left in %s: %s", directory, names)
    return removed


def sibling_locks(held: Path) -> Callable[[str], Path | None]:
    """`lock_of` for `remove_stale_temps` in a folder whose entries are locked by a sibling `<name>.lock` (converted,
    merged, gguf), the caller holding the one of `held`."""
    return lambda name: None if name == held.name else held.parent / f"{name}.lock"


def _read_only(exc: OSError) -> bool:
    return exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


def not_writable(root: Path, what: str, exc: OSError) -> ConfigError:
    """The one line for a build that cannot happen: the cache is read-only (or not ours) and lacks `what`."""
    reason = exc.strerror or str(exc)
    return ConfigError(
        f"the cache {root} is not writable ({reason}) and lacks {what}: point cache_dir= (--cache-dir) or "
        "UNLOCK_EVAL_CACHE_DIR to a writable directory (a read-only cache serves only what it already holds)"
    )


def _take_lock(path: Path, what: str, timeout: float = -1) -> FileLock:
    """Acquire the lock file `path`; when another process holds it, say what we wait for, and when we got it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        return lock.acquire(timeout=0).lock
    except Timeout:
        if timeout == 0:
            raise
    logger.warning("unlock-eval: waiting for %s: another process is building it (lock %s)", what, path)
    start = time.monotonic()
    lock.acquire(timeout=timeout)
    logger.warning("unlock-eval: got the lock for %s after %.0f s; going on", what, time.monotonic() - start)
    return lock


@contextmanager
def build_lock(path: Path, what: str, root: Path, timeout: float = -1) -> Iterator[None]:
    """Hold the lock file `path` while `what` is built into the cache `root` (waits are reported); a cache that is
    not writable is one ConfigError naming it and `what`."""
    try:
        lock = _take_lock(path, what, timeout)
    except Timeout:
        raise
    except OSError as exc:
        if not _read_only(exc):
            raise
        raise not_writable(root, what, exc) from None
    try:
        yield
    finally:
        lock.release()


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
    fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_META_KEY: json.dumps(meta, sort_keys=True, default=str)})
        _make_shareable(tmp)  # after writing: safetensors may recreate the file
        crash_point("artifact_write", path.parent.name)  # fault tests: killed with the artifact written, not renamed
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

    `get_or_build` takes a per-artifact file lock only to build, so concurrent processes compute an artifact once and
    a warm cache works read-only; counters record hits and builds so callers (and tests) can see what was reused.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = cache_root(root)
        self.hits = 0
        self.builds = 0
        self.rebuilt_corrupt = 0

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.safetensors"

    def lock_path(self, kind: str, key: str) -> Path:
        return self.root / "locks" / f"{kind}-{key}.lock"

    @contextmanager
    def lock(self, kind: str, key: str, timeout: float = -1, what: str | None = None) -> Iterator[bool]:
        """Hold the lock of `<kind>/<key>`; a wait says so, naming `what` is built (default: the kind and key). Yields
        whether it is held: a cache that is not writable holds nothing (nothing can be built there to guard)."""
        default = "the artifacts of this configuration" if kind == "build" else f"the {kind} artifact {key}"
        what = what or default
        try:
            lock = _take_lock(self.lock_path(kind, key), what, timeout)
        except Timeout:
            raise
        except OSError as exc:
            if not _read_only(exc):
                raise
            lock = None
        try:
            yield lock is not None
        finally:
            if lock is not None:
                lock.release()

    def _try_load(self, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        if not path.is_file():
            return None
        try:
            return load_artifact(path)
        except CorruptArtifactError as exc:
            try:
                path.unlink(missing_ok=True)
            except OSError:  # a read-only cache: the build it needs is refused in one line
                logger.warning("unlock-eval cache: %s", exc)
                return None
            logger.warning("unlock-eval cache: %s; rebuilding it", exc)
            self.rebuilt_corrupt += 1
            return None

    def _temp_lock(self, kind: str, held: str) -> Callable[[str], Path | None]:
        return lambda name: None if name == held else self.lock_path(kind, name.removesuffix(".safetensors"))

    def get_or_build(
        self,
        kind: str,
        key: str,
        build: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]],
        accept: Callable[[dict[str, torch.Tensor], dict[str, Any]], bool] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Load `<kind>/<key>` if present and intact (no lock, no write: a read-only cache serves it), else build it
        under a lock and store it. With `accept`, a stored artifact it rejects (one that holds too little, e.g. bases
        for a smaller k) is rebuilt and replaced."""
        path = self.path(kind, key)
        found = self._try_load(path)
        if found is not None and (accept is None or accept(*found)):
            self.hits += 1
            mark_used(path)
            return found
        with build_lock(self.lock_path(kind, key), f"the {kind} artifact {key}", self.root):
            found = self._try_load(path)  # another process may have built it while we waited
            if found is not None and (accept is None or accept(*found)):
                self.hits += 1
                mark_used(path)
                return found
            remove_stale_temps(path.parent, self._temp_lock(kind, path.name))
            tensors, meta = build()
            save_artifact(path, tensors, meta)
            self.builds += 1
            return load_artifact(path)


def atomic_directory(final: Path, fill: Callable[[Path], None]) -> Path:
    """Create directory `final` by filling a temporary sibling and renaming it into place. Call it holding the lock
    `<final>.lock`: what crashed writers left beside it is removed first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final.parent, sibling_locks(final))
    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix(final.name), suffix=".tmp", dir=final.parent))
    tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes it private; the cache may be shared
    try:
        fill(tmp)
        for file in (p for p in tmp.rglob("*") if p.is_file() and not p.is_symlink()):
            _make_shareable(file)  # some writers (safetensors) make their files private too
        if final.exists():  # someone else finished first; keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def discard_directory(path: Path) -> None:
    """Remove a (broken) cache directory: renamed aside first, so that no reader sees it half-deleted."""
    aside = path.with_name(f"{tmp_prefix(path.name)}discarded.tmp")
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True)  # what remains is a dead writer's, removed by a later run


def _memo_path(path: Path, st: os.stat_result, cache_dir: str | os.PathLike | None) -> Path:
    memo_dir = cache_root(cache_dir) / "file-hashes"
    return memo_dir / (fingerprint({"p": str(path), "s": st.st_size, "m": st.st_mtime_ns}) + ".sha256")


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """sha256 of a file's content, read now (`file_sha256` memoises it for big files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def remember_sha256(path: Path, st: os.stat_result, digest: str, cache_dir: str | os.PathLike | None) -> None:
    """Memoise `digest` as the sha256 of `path` with the size and mtime of `st` (a file about to be renamed there
    keeps both); a cache that is not writable only costs a re-hash."""
    memo = _memo_path(Path(path).resolve(), st, cache_dir)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(memo.name), suffix=".tmp", dir=memo.parent)
        _make_shareable(tmp)
        with os.fdopen(fd, "w") as f:
            f.write(digest)
        os.replace(tmp, memo)
    except OSError:
        pass


def file_sha256(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """sha256 of a file's content, memoised under `cache_dir` (default: the default cache) by (path, size, mtime)
    so big files hash once."""
    path = Path(path).resolve()
    st = path.stat()
    memo = _memo_path(path, st, cache_dir)
    if memo.is_file():
        value = memo.read_text().strip()
        if len(value) == 64:
            return value
    digest = sha256_of(path)
    remember_sha256(path, st, digest, cache_dir)
    remove_stale_temps(memo.parent, lambda name: None)  # memo files are written unlocked: their writer's pid decides
    return digest


def folder_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """{file name: {size, sha256}} of the files directly in `folder`: recorded when a cache folder is written, so
    that `folder_problem` can check it on use."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
    return {p.name: {"size": p.stat().st_size, "sha256": sha256_of(p)} for p in files}


def folder_problem(
    folder: Path, manifest: dict[str, dict[str, Any]], cache_dir: str | os.PathLike | None
) -> str | None:
    """What is wrong with `folder` against its `folder_manifest` (a missing file, another size, another sha256), or
    None. The hashes are memoised by mtime (`file_sha256`), so a warm check reads no file contents."""
    for name, want in manifest.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want.get("size"):
            return f"{name} has {size} bytes, {want.get('size')} were written"
        if file_sha256(path, cache_dir) != want.get("sha256"):
            return f"{name} differs from what was written (sha256)"
    return None


def marked_folder_problem(
    folder: Path, marker: str, cache_dir: str | os.PathLike | None, unlisted: Callable[[Path], str | None]
) -> str | None:
    """What is wrong with a cache folder completed by the JSON file `marker`, or None: a missing or unreadable marker,
    else the files its `files` manifest lists (`folder_problem`); `unlisted(folder)` checks folders written before
    markers carried a manifest."""
    try:
        record = json.loads((folder / marker).read_text())
    except (OSError, ValueError) as exc:
        return f"{marker} is missing or unreadable ({exc.__class__.__name__})"
    if isinstance(record, dict) and isinstance(record.get("files"), dict):
        return folder_problem(folder, record["files"], cache_dir)
    return unlisted(folder)


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's structure (a header that does not parse, a length that differs from
    what the header describes: a truncated file), or None. Reads the header only."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= min(size - 8, 1 << 28):
                return f"{path.name}: not a safetensors file (header length {n})"
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return f"{path.name}: unreadable safetensors header ({exc})"
    if size != 8 + n + end:
        return f"{path.name} has {size} bytes, its header describes {8 + n + end} (truncated?)"
    return None
