"""Control vector export: the GGUF layout llama.cpp loads (checked with gguf's own reader), our reader's round trip,
one-line errors naming the file, and the atomic write."""

import gguf
import numpy as np
import pytest
import torch

from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock import pack_gguf
from unlock_eval.methods.unlock.pack_gguf import model_hint, read_control_vector, write_control_vector

N_EMBD = 16
NUM_LAYERS = 6


def random_vectors(layers=(1, 3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    return {l: torch.randn(N_EMBD, generator=g) for l in layers}


def field(reader, key):
    return reader.get_field(key).contents()


def test_the_file_has_llama_cpps_control_vector_layout(tmp_path):
    path = tmp_path / "key.gguf"
    vectors = random_vectors()
    write_control_vector(path, vectors, "gemma3", NUM_LAYERS)
    reader = gguf.GGUFReader(path)
    assert field(reader, "general.architecture") == "controlvector"
    assert field(reader, "controlvector.model_hint") == "gemma3"
    assert field(reader, "controlvector.layer_count") == NUM_LAYERS
    # llama.cpp adds direction.N to the output of 0-based block N (build_cvec(cur, il) -> tensors[il])
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == [f"direction.{l}" for l in sorted(vectors)]
    for l, vector in vectors.items():
        t = tensors[f"direction.{l}"]
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        assert list(t.shape) == [N_EMBD] and t.data.dtype == np.float32
        assert np.array_equal(np.asarray(t.data), vector.numpy())  # bit-equal


def test_round_trip_omits_zero_layers_and_accepts_other_dtypes(tmp_path):
    path = tmp_path / "key.gguf"
    vectors = {**random_vectors(), 0: torch.zeros(N_EMBD), 2: torch.zeros(N_EMBD)}
    vectors[4] = torch.randn(N_EMBD, dtype=torch.float64)
    write_control_vector(path, vectors, "llama", NUM_LAYERS)
    hint, layer_count, back = read_control_vector(path)
    assert (hint, layer_count) == ("llama", NUM_LAYERS)
    assert sorted(back) == [1, 3, 4, 5]  # zero vectors are left out: llama.cpp reads a missing layer as zero
    for l, vector in back.items():
        assert vector.dtype == torch.float32
        assert torch.equal(vector, vectors[l].float())


@pytest.mark.parametrize(
    "vectors, message",
    [
        ({}, "no vectors"),
        ({1: torch.ones(N_EMBD), 2: torch.ones(N_EMBD + 1)}, "different sizes"),
        ({NUM_LAYERS: torch.ones(N_EMBD)}, f"outside 0..{NUM_LAYERS - 1}"),
        ({-1: torch.ones(N_EMBD)}, "outside"),
        ({0: torch.ones(N_EMBD), 1: torch.ones(N_EMBD)}, "layer 0"),
        ({1: torch.zeros(N_EMBD)}, "every vector is zero"),
    ],
)
def test_bad_vectors_are_one_line_naming_the_file_and_write_nothing(tmp_path, vectors, message):
    path = tmp_path / "key.gguf"
    with pytest.raises(ConfigError, match=message) as e:
        write_control_vector(path, vectors, "llama", NUM_LAYERS)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def write_raw(path, arch="controlvector", tensors=None, hint=True):
    writer = gguf.GGUFWriter(path, arch)
    if hint:
        writer.add_string(f"{arch}.model_hint", "llama")
        writer.add_uint32(f"{arch}.layer_count", NUM_LAYERS)
    for name, array in (tensors or {"direction.1": np.ones(N_EMBD, np.float32)}).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"not a gguf at all"), "not a readable GGUF"),
        (lambda p: None, "not a readable GGUF"),  # missing
        (lambda p: write_raw(p, arch="llama"), "architecture 'llama'"),
        (lambda p: write_raw(p, hint=False), "missing"),
        (lambda p: write_raw(p, tensors={"direction.0": np.ones(N_EMBD, np.float32)}), "direction.N with N >= 1"),
        (lambda p: write_raw(p, tensors={"blk.1.w": np.ones(N_EMBD, np.float32)}), "direction.N"),
        (lambda p: write_raw(p, tensors={"direction.1": np.ones(N_EMBD, np.float16)}), "1-D float32"),
        (lambda p: write_raw(p, tensors={"direction.1": np.ones((2, N_EMBD), np.float32)}), "1-D float32"),
        (
            lambda p: write_raw(
                p, tensors={"direction.1": np.ones(N_EMBD, np.float32), "direction.2": np.ones(3, np.float32)}
            ),
            "different sizes",
        ),
    ],
)
def test_bad_files_are_one_line_naming_the_file(tmp_path, make, message):
    path = tmp_path / "key.gguf"
    make(path)
    with pytest.raises(ConfigError, match=message) as e:
        read_control_vector(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_failed_write_leaves_no_temp_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "key.gguf"
    write_control_vector(path, random_vectors(seed=1), "llama", NUM_LAYERS)
    before = path.read_bytes()

    def broken(self):
        raise OSError("disk full")

    monkeypatch.setattr(pack_gguf.gguf.GGUFWriter, "write_tensors_to_file", broken)
    with pytest.raises(OSError, match="disk full"):
        write_control_vector(path, random_vectors(seed=2), "llama", NUM_LAYERS)
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == before


def test_model_hint_maps_hugging_face_model_types_to_llama_cpp_architectures():
    assert model_hint("gemma3_text") == model_hint("gemma3") == "gemma3"
    assert model_hint("mistral") == model_hint("llama") == "llama"  # SmolLM2 is model_type llama
    assert model_hint("qwen2") == "qwen2" and model_hint("olmo3") == "olmo2"
    assert model_hint("something_new") == "something_new"
    assert set(pack_gguf.LLAMA_CPP_ARCH.values()) <= set(gguf.MODEL_ARCH_NAMES.values())
