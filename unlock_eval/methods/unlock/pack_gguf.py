"""Export of per-layer steering vectors as a llama.cpp control vector GGUF (`--control-vector-scaled FILE:SCALE`)."""

# Layout (ggml-org/llama.cpp; vgel/repeng repeng/extract.py ControlVector.export_gguf writes the same):
# general.architecture "controlvector", controlvector.model_hint and controlvector.layer_count (no loader reads either),
# one 1-D F32 tensor "direction.N" of n_embd per steered layer. common/common.cpp common_control_vector_load_one puts
# direction.N * SCALE at row N-1 (a missing N is zero) and drops the whole file, running unsteered, on a non-F32,
# non-1-D, mis-sized or "direction.0" tensor. src/llama-adapter.cpp llama_adapter_cvec: tensors[0] is null, apply()
# sets tensors[N] from row N-1, apply_to(cur, il) adds tensors[il] at every position, and src/models/*.cpp call
# build_cvec(cur, il) at the end of block il of `for (il = 0; il < n_layer; ++il)`. So direction.N steers the output of
# 0-based decoder layer N, the layer our hooks on decoder_layers[N] steer (and repeng's directions[N]); layer 0 cannot
# be steered. Checked with llama-eval-callback (the llama.cpp in llama-cpp-python 0.3.36): direction.5 moved l_out-5,
# and no earlier l_out, by exactly SCALE * vector.
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gguf
import numpy as np
import torch

from unlock_eval.cache import tmp_prefix
from unlock_eval.errors import ConfigError

ARCH = "controlvector"
# Hugging Face config.model_type -> llama.cpp architecture (convert_hf_to_gguf's choice; gguf MODEL_ARCH_NAMES)
LLAMA_CPP_ARCH: dict[str, str] = {
    "llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "qwen2", "qwen2_moe": "qwen2moe",
    "qwen3": "qwen3", "qwen3_moe": "qwen3moe", "gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3",
    "gemma3_text": "gemma3", "phi": "phi2", "phi3": "phi3", "olmo": "olmo", "olmo2": "olmo2", "olmo3": "olmo2",
    "granite": "granite", "granitemoe": "granitemoe", "smollm3": "smollm3", "gpt2": "gpt2", "gpt_neox": "gptneox",
    "stablelm": "stablelm", "starcoder2": "starcoder2", "cohere": "command-r", "cohere2": "cohere2",
}  # fmt: skip


def model_hint(model_type: str) -> str:
    """llama.cpp's architecture name for a Hugging Face model_type (SmolLM2 is "llama"); unknown ones as given."""
    return LLAMA_CPP_ARCH.get(model_type, model_type)


def write_control_vector(path, vectors: dict[int, torch.Tensor], model_hint: str, num_layers: int) -> None:
    """Write `vectors` (0-based decoder layer -> vector of the hidden size to ADD to that layer's output) to `path`
    as a llama.cpp control vector, atomically. Layer l is written as direction.l; zero vectors are omitted (llama.cpp
    reads a missing layer as zero), and a non-zero layer 0 is refused, since llama.cpp never steers it."""
    path = Path(path)
    if not vectors:
        raise ConfigError(f"control vector {path}: no vectors to write")
    arrays = {}
    for layer, vector in sorted(vectors.items()):
        if not 0 <= layer < num_layers:
            raise ConfigError(f"control vector {path}: layer {layer} is outside 0..{num_layers - 1}")
        arrays[layer] = vector.detach().to("cpu", torch.float32).reshape(-1).numpy()
    if len(sizes := {a.size for a in arrays.values()}) > 1:
        raise ConfigError(f"control vector {path}: vectors of different sizes {sorted(sizes)}")
    arrays = {layer: array for layer, array in arrays.items() if array.any()}
    if 0 in arrays:
        raise ConfigError(f"control vector {path}: llama.cpp cannot steer the output of layer 0 (no direction.0)")
    if not arrays:
        raise ConfigError(f"control vector {path}: every vector is zero (llama.cpp refuses a file with no direction)")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=tmp_prefix(path.name), suffix=".tmp")
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, ARCH)
        writer.add_string(f"{ARCH}.model_hint", model_hint)
        writer.add_uint32(f"{ARCH}.layer_count", num_layers)
        for layer, array in arrays.items():
            writer.add_tensor(f"direction.{layer}", np.ascontiguousarray(array))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the file is meant to be handed to llama.cpp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_control_vector(path) -> tuple[str, int, dict[int, torch.Tensor]]:
    """(model_hint, layer_count, {0-based layer: float32 vector}) of a control vector GGUF, checked as llama.cpp
    checks it."""
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # the reader raises what the bytes provoke: ValueError, IndexError, struct/OS errors
        raise ConfigError(f"control vector {path}: not a readable GGUF file ({e})") from e
    keys = ("general.architecture", f"{ARCH}.model_hint", f"{ARCH}.layer_count")
    arch, hint, layer_count = (f.contents() if (f := reader.get_field(key)) is not None else None for key in keys)
    if arch != ARCH:
        raise ConfigError(f"control vector {path}: architecture {arch!r}, not {ARCH!r}")
    if hint is None or layer_count is None:
        raise ConfigError(f"control vector {path}: missing {ARCH}.model_hint or {ARCH}.layer_count")
    directions = {}
    for tensor in reader.tensors:
        prefix, _, index = tensor.name.partition(".")
        if prefix != "direction" or not index.isdigit() or int(index) == 0:
            raise ConfigError(f"control vector {path}: tensor {tensor.name!r} is not direction.N with N >= 1")
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32 or len(tensor.shape) != 1:
            raise ConfigError(f"control vector {path}: {tensor.name} is not a 1-D float32 tensor")
        directions[int(index)] = torch.from_numpy(np.array(tensor.data, dtype=np.float32))
    if len({v.numel() for v in directions.values()}) > 1:
        raise ConfigError(f"control vector {path}: direction tensors of different sizes")
    return hint, int(layer_count), directions
