"""Weight-space transfer (task arithmetic), out of core: θ = θ_target + lam·(θ_source − θ_source_locked), cached.

The merge reads the three models' safetensors shards one tensor at a time (large tensors in row chunks through
`safe_open(...).get_slice`) and writes the result in shards, so at most one output shard and three input chunks
are in memory, never three models. Names and shapes must match exactly: nothing is cropped or skipped. The one
exception is opt-in: `vocab="shared_prefix"` transfers the shared rows of the vocabulary-sized tensors when the
row counts differ (an added pad token), after checking that the tokenizers give those ids the same strings.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from unlock_eval.cache import (
    atomic_directory,
    build_lock,
    cache_root,
    discard_directory,
    fingerprint,
    folder_manifest,
    mark_used,
    marked_folder_problem,
    remember_sha256,
    safetensors_problem,
)
from unlock_eval.errors import ConfigError
from unlock_eval.faults import crash_point
from unlock_eval.method import ROLES

logger = logging.getLogger(__name__)

MERGE_VERSION = 1  # bump when the merged layout or arithmetic changes, so old merges are not reused
MARKER = "unlock_eval_merge.json"
VOCAB_MODES = ("exact", "shared_prefix")
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5"}
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def check_vocab(value: str) -> None:
    if value not in VOCAB_MODES:
        raise ConfigError(f"vocab={value!r}: allowed values are {', '.join(VOCAB_MODES)}")


@dataclass(frozen=True)
class TensorInfo:
    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors' name: F32, BF16, ...


def read_index(model_dir: Path, label: str) -> dict[str, TensorInfo]:
    """Every tensor of a model folder's safetensors files (name -> file, shape, dtype), headers only."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        others = sorted(p.name for p in model_dir.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
        raise ConfigError(
            f"{label}: no .safetensors weights in {model_dir} (found: {', '.join(others) or 'nothing'}); "
            "weight_transfer reads safetensors (save the model with save_pretrained(safe_serialization=True))"
        )
    index: dict[str, TensorInfo] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                piece = f.get_slice(name)
                index[name] = TensorInfo(file, tuple(piece.get_shape()), piece.get_dtype())
    return index


def _vocab_size(model_dir: Path) -> int | None:
    config = json.loads((model_dir / "config.json").read_text())
    return config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")


def check_architectures(
    indexes: dict[str, dict[str, TensorInfo]], labels: dict[str, str], vocab: str, dirs: dict[str, Path]
) -> int:
    """Refuse (one line) unless names and shapes match; returns the number of vocabulary rows transferred."""
    target = indexes["target"]
    vocabs = {role: _vocab_size(dirs[role]) for role in ROLES}
    shared = min(v for v in vocabs.values() if v) if all(vocabs.values()) else None
    row_mismatch = False
    for role in ("source", "source_locked"):
        other = indexes[role]
        for name in sorted(set(target) | set(other)):
            if name not in other or name not in target:
                has, lacks = ("target", role) if name not in other else (role, "target")
                raise ConfigError(
                    f"weight_transfer: tensor {name} is in {has} ({labels[has]}) but not in {lacks} "
                    f"({labels[lacks]}); weight-space transfer needs identical architectures "
                    "(for models of different sizes or families use --model unlock)"
                )
            a, b = target[name].shape, other[name].shape
            if a == b:
                continue
            vocab_rows = len(a) == len(b) and a[1:] == b[1:] and {a[0], b[0]} == {vocabs["target"], vocabs[role]}
            if vocab_rows and vocab == "shared_prefix":
                row_mismatch = True
                continue
            hint = (
                "; the vocabularies differ in size: pass vocab=shared_prefix to transfer the shared rows"
                if vocab_rows
                else "; weight-space transfer needs identical architectures (for models of different sizes or "
                "families use --model unlock)"
            )
            raise ConfigError(
                f"weight_transfer: tensor {name} has shape {list(a)} in target ({labels['target']}) but "
                f"{list(b)} in {role} ({labels[role]}){hint}"
            )
    if row_mismatch:
        check_shared_tokens(dirs, labels, shared)
    return shared or 0


def check_shared_tokens(dirs: dict[str, Path], labels: dict[str, str], rows: int) -> None:
    """vocab=shared_prefix: the first `rows` ids must be the same strings in all three tokenizers."""
    from transformers import AutoTokenizer

    tokens = {}
    for role in ROLES:
        try:
            tok = AutoTokenizer.from_pretrained(str(dirs[role]))
        except Exception as exc:  # noqa: BLE001 - any loading failure means the check cannot be done
            raise ConfigError(
                f"vocab=shared_prefix: cannot load the tokenizer of {role} ({labels[role]}): {exc}"
            ) from None
        tokens[role] = tok.convert_ids_to_tokens(list(range(rows)))
    for role in ("source", "source_locked"):
        for i, (a, b) in enumerate(zip(tokens["target"], tokens[role])):
            if a != b:
                raise ConfigError(
                    f"vocab=shared_prefix: token id {i} is {a!r} in target ({labels['target']}) but {b!r} in "
                    f"{role} ({labels[role]}); the shared rows do not mean the same tokens, so they cannot be merged"
                )


def _rows_per_chunk(shape: tuple[int, ...], chunk_bytes: int) -> int:
    row_bytes = 4 * max(1, int(torch.Size(shape[1:]).numel()))  # computed in float32
    return max(1, chunk_bytes // row_bytes)


def _read_rows(info: TensorInfo, name: str, start: int | None = None, stop: int | None = None) -> torch.Tensor:
    """Rows [start:stop] of one tensor (the whole tensor when start is None), as float32."""
    with safe_open(str(info.file), framework="pt") as f:
        tensor = f.get_tensor(name) if start is None else f.get_slice(name)[start:stop]
    return tensor.to(torch.float32)


def merge_tensor(name: str, infos: dict[str, TensorInfo], lam: float, shared_rows: int, chunk_bytes: int):
    """One merged tensor in the target's dtype, computed in float32 from row chunks of the three inputs."""
    t, source, locked = (infos[role] for role in ROLES)
    dtype = _DTYPES.get(t.dtype)
    if dtype is None:  # integer or boolean buffers are not weights: the target's own
        with safe_open(str(t.file), framework="pt") as f:
            return f.get_tensor(name)
    if not t.shape:
        return (_read_rows(t, name) + lam * (_read_rows(source, name) - _read_rows(locked, name))).to(dtype)
    rows = t.shape[0]
    # vocab=shared_prefix: only the shared vocabulary rows get the delta, the target's extra rows stay its own
    limit = rows if source.shape == locked.shape == t.shape else min(rows, shared_rows)
    out = torch.empty(t.shape, dtype=dtype)
    step = _rows_per_chunk(t.shape, chunk_bytes)
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        merged = _read_rows(t, name, start, stop)
        end = min(stop, limit)
        if end > start:
            delta = _read_rows(source, name, start, end) - _read_rows(locked, name, start, end)
            merged[: end - start] = merged[: end - start] + lam * delta
        out[start:stop] = merged
    return out


def check_mergeable(
    dirs: dict[str, Path], labels: dict[str, str], vocab: str, identities: dict[str, Any] | None = None
) -> tuple[dict[str, dict[str, TensorInfo]], int]:
    """Refuse (one line) what cannot be merged: other architectures, other vocabularies (unless shared_prefix),
    a zero delta. Returns every model's tensor index and the vocabulary rows transferred."""
    check_vocab(vocab)
    dirs = {role: Path(dirs[role]) for role in ROLES}
    indexes = {role: read_index(dirs[role], f"{role} ({labels[role]})") for role in ROLES}
    shared_rows = check_architectures(indexes, labels, vocab, dirs)
    if identities is not None and identities["source"] == identities["source_locked"]:
        raise ConfigError(
            f"source_locked is the same model as source ({labels['source']}): the weight delta would be zero; "
            "weight_transfer needs the post-trained model (source) and the one it was trained from (source_locked)"
        )
    return indexes, shared_rows


def merge_models(
    dirs: dict[str, Path],
    lam: float,
    out_dir: Path,
    labels: dict[str, str] | None = None,
    vocab: str = "exact",
    chunk_bytes: int = 64 << 20,
    shard_bytes: int = 1 << 30,
    progress: bool = False,
) -> dict[str, Any]:
    """Write θ_target + lam·(θ_source − θ_source_locked) into `out_dir` as a loadable model folder (the target's
    config and tokenizer files, sharded safetensors); returns what it did (tensors, shared vocabulary rows)."""
    dirs, out_dir = {role: Path(dirs[role]) for role in ROLES}, Path(out_dir)
    labels = labels or {role: str(dirs[role]) for role in ROLES}
    indexes, shared_rows = check_mergeable(dirs, labels, vocab)
    names = list(indexes["target"])
    from tqdm.auto import tqdm

    shard: dict[str, torch.Tensor] = {}
    written: list[str] = []
    for name in tqdm(names, desc="weight_transfer merge", disable=not progress, unit="tensor"):
        shard[name] = merge_tensor(name, {role: indexes[role][name] for role in ROLES}, lam, shared_rows, chunk_bytes)
        if sum(t.numel() * t.element_size() for t in shard.values()) >= shard_bytes or name == names[-1]:
            path = out_dir / f"part-{len(written):05d}.safetensors"
            save_file(shard, str(path), metadata={"format": "pt"})
            crash_point("merge")  # a job killed between shards: the half-merged folder must never be used
            written.append(path.name)
            shard = {}
    _name_shards(out_dir, written)
    for item in Path(dirs["target"]).iterdir():  # config, generation config, tokenizer files
        if item.is_file() and item.suffix not in _WEIGHT_SUFFIXES and not item.name.endswith(".index.json"):
            shutil.copy2(item, out_dir / item.name)
    return {"tensors": len(names), "shards": len(written), "vocab_rows_transferred": shared_rows or None}


def _name_shards(out_dir: Path, written: list[str]) -> None:
    """HF's names: model.safetensors, or model-0000i-of-0000n.safetensors with a weight-map index."""
    if len(written) == 1:
        (out_dir / written[0]).rename(out_dir / "model.safetensors")
        return
    weight_map = {}
    for i, part in enumerate(written, start=1):
        final = f"model-{i:05d}-of-{len(written):05d}.safetensors"
        (out_dir / part).rename(out_dir / final)
        with safe_open(str(out_dir / final), framework="pt") as f:
            weight_map.update(dict.fromkeys(f.keys(), final))
    total = sum(p.stat().st_size for p in out_dir.glob("model-*.safetensors"))
    index_file = out_dir / "model.safetensors.index.json"
    index_file.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))


def merged_model(
    dirs: dict[str, Path],
    identities: dict[str, Any],
    lam: float,
    labels: dict[str, str],
    vocab: str = "exact",
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[Path, bool]:
    """The merged model folder for these three models and `lam`, built once under `<cache>/merged/<key>`.
    Returns (folder, whether it was already cached)."""
    root = cache_root(cache_dir)
    key = fingerprint({"v": MERGE_VERSION, "lam": lam, "vocab": vocab, **{r: identities[r] for r in ROLES}})
    final = root / "merged" / key
    problem = merged_problem(final, root) if final.exists() else "missing"
    if problem is None:  # checked against what was written; no lock to read: a read-only cache serves it
        mark_used(final)
        return final, True
    if problem != "missing":
        logger.warning("unlock-eval: the merged model %s is broken (%s); merging it again", final, problem)
    check_mergeable(dirs, labels, vocab, identities)  # before the lock: a refusal costs header reads only
    what = f"the merged model {labels['target']} + {lam:g} x ({labels['source']} - {labels['source_locked']})"
    with build_lock(Path(f"{final}.lock"), what, root):
        if final.exists() and merged_problem(final, root) is None:  # another process built it while we waited
            mark_used(final)
            return final, True
        if final.exists():
            discard_directory(final)

        def fill(tmp: Path) -> None:
            logger.warning("unlock-eval: merging weights once into %s (later runs reuse it)", final)
            done = merge_models(dirs, lam, tmp, labels, vocab=vocab, progress=progress)
            record = {
                "description": f"{labels['target']} + {lam:g} x ({labels['source']} - {labels['source_locked']})",
                "lam": lam,
                "vocab": vocab,
                "models": {r: {"spec": labels[r], "identity": identities[r]} for r in ROLES},
                **done,
                "merge_version": MERGE_VERSION,
            }
            files = folder_manifest(tmp)  # checked on every later use (merged_problem)
            for name, written in files.items():  # the first warm check then reads no weights (hashes memoised)
                remember_sha256(final / name, (tmp / name).stat(), written["sha256"], root)
            (tmp / MARKER).write_text(json.dumps({**record, "files": files}, indent=1, default=str))

        atomic_directory(final, fill)
    return final, False


def merged_problem(folder: Path, root: Path) -> str | None:
    """What is wrong with a merged folder, or None: its marker lists each file's size and sha256 (merges written
    before that are checked by their safetensors headers)."""
    return marked_folder_problem(folder, MARKER, root, _headers_problem)


def _headers_problem(folder: Path) -> str | None:
    return next(filter(None, (safetensors_problem(p) for p in sorted(folder.glob("*.safetensors")))), None)


def model_folder(resolved) -> Path:
    """A local folder with the model's safetensors (hub models: their snapshot in the HF cache, fetched if needed)."""
    if resolved.kind != "hub":
        return Path(resolved.pretrained)
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
    try:
        return Path(snapshot_download(resolved.spec, revision=resolved.identity["commit"], allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001 - offline, gated, deleted: all mean the weights are not available
        raise ConfigError(f"model {resolved.spec!r}: its weights could not be fetched from the Hub: {exc}") from None
