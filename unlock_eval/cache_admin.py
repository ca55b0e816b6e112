"""Cache housekeeping: list what the artifact cache holds (kind, size, last use) and prune entries safely."""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from unlock_eval.cache import cache_root, tmp_writer
from unlock_eval.errors import ConfigError

MODEL_KINDS = ("merged", "converted", "gguf")  # a directory or file per entry, locked by a sibling `<name>.lock`
# other kinds (states, masterkey, subspacemap, ...): `<key>.safetensors`, locked by `locks/<kind>-<key>.lock`
KINDS = (*MODEL_KINDS, "states", "bases", "masterkey", "subspacemap", "file-hashes")  # file-hashes: one entry in all


@dataclass
class CacheEntry:
    kind: str
    name: str
    path: Path
    size_bytes: int
    last_used: float  # mtime (of a directory itself); `cache.mark_used` sets it when an entry is reused
    description: str


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum((Path(d) / f).lstat().st_size for d, _, files in os.walk(path) for f in files)  # links not followed


def _short(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _metadata(path: Path) -> dict:
    """An artifact's JSON metadata, read from the safetensors header only (never the tensors)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["unlock_eval"])


def _state_roles(root: Path) -> dict[str, str]:
    """states key -> its role(s) in the master keys made from it ("locked", "unlocked" or both)."""
    roles: dict[str, set[str]] = {}
    for path in (root / "masterkey").glob("*.safetensors"):
        try:
            meta = _metadata(path)
            for role in ("locked", "unlocked"):
                roles.setdefault(meta[role]["states"], set()).add(role)
        except Exception:  # noqa: BLE001 - an unreadable key just names no roles
            continue
    return {key: "/".join(sorted(r)) for key, r in roles.items()}


def _describe(kind: str, path: Path, roles: dict[str, str]) -> str:
    """One short line from the entry's marker or metadata."""
    if kind == "file-hashes":
        return f"{sum(1 for _ in path.iterdir())} memoised file hashes"
    if path.name.endswith(".tmp"):
        return _describe_tmp(path.name)
    if kind == "gguf":
        return "assembled embedded GGUF"
    try:
        if kind in ("merged", "converted"):
            marker = json.loads((path / f"unlock_eval_{'merge' if kind == 'merged' else 'source'}.json").read_text())
            return str(marker["description"]) if kind == "merged" else f"from {Path(marker['gguf_file']).name}"
        meta = _metadata(path)
    except Exception:  # noqa: BLE001 - a damaged entry is still listed (and prunable), just not described
        return "no readable marker or metadata"
    n = f"n={meta['n']}" if "n" in meta else ""
    if meta.get("artifact") == "Bases":
        centred = " centred" if meta.get("center") else ""
        return (
            f"{meta.get('model_spec')} top-{meta.get('k')}{centred} bases of {len(meta.get('layers', []))} layers {n}"
        )
    if "model_spec" in meta:  # states
        role = roles.get(path.stem, "")
        return f"{meta['model_spec']} {role} {n} template {_short(repr(meta.get('template')), 32)}"
    if "locked" in meta:  # masterkey
        locked, unlocked = meta["locked"].get("model"), meta["unlocked"].get("model")
        pair = locked if locked == unlocked else f"{locked} -> {unlocked}"
        return f"{pair} locked->unlocked {meta.get('aggregator', '')} {n}"
    if "source" in meta:  # subspacemap
        return f"{meta['source'].get('model')} -> {meta['target'].get('model')} k={meta.get('k')} {n}"
    return f"{meta.get('artifact', kind)} {n}"


def _describe_tmp(name: str) -> str:
    writer = tmp_writer(name)
    if writer is None:
        return "incomplete (.tmp: being written, or left by a crash)"
    if writer[2]:
        return f"incomplete, left by a crashed writer (pid {writer[1]} has ended); the next build removes it"
    return f"incomplete (.tmp: being written by pid {writer[1]}, or left by a crash on another host)"


def _entry(kind: str, path: Path, roles: dict[str, str]) -> CacheEntry:
    used = path.lstat().st_mtime
    if kind == "gguf" and (lock := path.with_name(f"{path.name}.lock")).is_file():  # a GGUF's mtime keys its
        used = max(used, lock.stat().st_mtime)  # memoised hash, so its reuse is marked on its lock file instead
    desc = " ".join(_describe(kind, path, roles).split())
    return CacheEntry(kind, path.name.removesuffix(".safetensors"), path, _size(path), used, desc)


def _is_entry(kind: str, path: Path) -> bool:
    if kind in MODEL_KINDS:
        return not path.name.endswith(".lock")
    return path.suffix == ".safetensors" or path.name.endswith(".tmp")


def admin_root(cache_dir: str | os.PathLike | None) -> Path:
    """The cache `cache list`/`prune` look at (--cache-dir, else UNLOCK_EVAL_CACHE_DIR or the user cache): one clear
    line when it is a file or does not exist."""
    root = cache_root(cache_dir, arg="--cache-dir")
    if not root.is_dir():
        raise ConfigError(
            f"no cache at {root}: the directory does not exist (nothing was cached there yet); "
            "give the cache with --cache-dir or UNLOCK_EVAL_CACHE_DIR"
        )
    return root


def list_entries(root: str | os.PathLike, kinds=None) -> list[CacheEntry]:
    """Every entry under `root` (optionally only `kinds`), by kind, least recently used first."""
    root = Path(root).expanduser()
    dirs = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.is_symlink()] if root.is_dir() else []
    allowed = sorted(set(KINDS) | {p.name for p in dirs} - {"locks"})
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or ())
    for kind in kinds:
        if kind not in allowed:
            raise ConfigError(f"unknown cache kind {kind!r}; allowed: {', '.join(allowed)}")
    roles = _state_roles(root) if not kinds or "states" in kinds else {}
    entries = []
    for kind_dir in dirs:
        kind = kind_dir.name
        if kind == "locks" or (kinds and kind not in kinds):
            continue
        for path in [kind_dir] if kind == "file-hashes" else [p for p in kind_dir.iterdir() if _is_entry(kind, p)]:
            try:
                entries.append(_entry(kind, path, roles))
            except FileNotFoundError:  # gone while we looked: a .tmp renamed into place, a concurrent prune
                continue
    return sorted(entries, key=lambda e: (e.kind, e.last_used))


def _lock_path(root: Path, entry: CacheEntry) -> Path | None:
    name = entry.path.name  # a `<final>.<random>.tmp` is being written under the final entry's lock
    name = name.rsplit(".", 2)[0] if name.endswith(".tmp") else name
    if entry.kind == "file-hashes":
        return None
    if entry.kind in MODEL_KINDS:
        return entry.path.parent / f"{name}.lock"
    return root / "locks" / f"{entry.kind}-{name.removesuffix('.safetensors')}.lock"


def _remove(root: Path, path: Path) -> None:
    real_root, parent = root.resolve(), path.parent.resolve()
    if parent != real_root and real_root not in parent.parents:  # never outside the root, never the root itself
        raise OSError(f"{path} is outside the cache {root}")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def prune(root, kinds=None, older_than_days=None, everything=False, dry_run=False):
    """Remove the selected entries (of `kinds` AND unused for `older_than_days`; or `everything`) whose lock is
    free. Returns (removed entries, [(skipped entry, reason)]); a `dry_run` deletes nothing."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"cache dir {root} does not exist (set --cache-dir or UNLOCK_EVAL_CACHE_DIR)")
    if older_than_days is not None and not older_than_days >= 0:
        raise ConfigError(f"older_than_days (--older-than) must be a number of days >= 0, got {older_than_days}")
    if not (kinds or older_than_days is not None or everything):
        raise ConfigError("prune selects nothing: give kinds (--kind), older_than_days (--older-than) or --all")
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    removed, skipped = [], []
    for entry in list_entries(root, kinds):
        if cutoff is not None and entry.last_used > cutoff:
            continue
        lock_path = _lock_path(root, entry)
        try:  # a dry run takes the lock too, so that it reports entries in use
            lockable = lock_path and (lock_path.exists() if dry_run else lock_path.parent.is_dir())  # dry: no writes
            with FileLock(str(lock_path), timeout=0) if lockable else nullcontext():
                if not dry_run:
                    _remove(root, entry.path)
            removed.append(entry)
        except Timeout:
            skipped.append((entry, "in use (its lock is held)"))
        except OSError as exc:
            skipped.append((entry, f"cannot remove: {exc}"))
    return removed, skipped


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _name(name: str, width: int = 24) -> str:  # keys are long: keep their start and end
    return name if len(name) <= width else f"{name[: width - 10]}...{name[-7:]}"


def _when(timestamp: float, now: float) -> str:
    age, seconds = "just now", max(0.0, now - timestamp)
    for unit, size in (("min", 60), ("h", 3600), ("d", 86400)):
        age = f"{int(seconds // size)} {unit} ago" if seconds >= size else age
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) + f" ({age})"


def format_list(entries: list[CacheEntry], root: Path) -> str:
    """`cache list`: a row per entry, then the size per kind and in all, then the cache root."""
    from tabulate import tabulate

    if not entries:
        return f"the cache is empty: {root}"
    now, head = time.time(), ["kind", "name", "size", "last used", "description"]
    rows = [
        [e.kind, _name(e.name), human_size(e.size_bytes), _when(e.last_used, now), _short(e.description, 80)]
        for e in entries
    ]
    groups = {kind: [e for e in entries if e.kind == kind] for kind in dict.fromkeys(e.kind for e in entries)}
    totals = [[k, len(es), human_size(sum(e.size_bytes for e in es))] for k, es in {**groups, "total": entries}.items()]
    table = tabulate(rows, headers=head, colalign=("left", "left", "right"))
    summary = tabulate(totals, headers=["kind", "entries", "size"], colalign=("left", "right", "right"))
    return f"{table}\n\n{summary}\n\ncache: {root}"


def format_prune(removed: list[CacheEntry], skipped: list, dry_run: bool) -> str:
    """`cache prune`: each removed (in a dry run: removable) entry, each skipped one with why, the bytes freed."""
    freed = sum(e.size_bytes for e in removed)
    lines = [
        f"{'would remove' if dry_run else 'removed'} {e.kind}/{e.name} ({human_size(e.size_bytes)})" for e in removed
    ]
    lines += [f"skipped {e.kind}/{e.name}: {reason}" for e, reason in skipped]
    lines.append(f"{'would free' if dry_run else 'freed'} {human_size(freed)} ({freed} bytes, {len(removed)} entries)")
    return "\n".join(lines)
