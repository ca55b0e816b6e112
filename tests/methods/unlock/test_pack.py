"""CapabilityPack: the file round-trips bit for bit, every damaged or foreign file is one line, targets are checked,
composition sums unit directions."""

import copy

import pytest
import torch

from unlock_eval import MasterKey
from unlock_eval.cache import load_artifact, save_artifact
from unlock_eval.cache import sha256_of as file_sha256
from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.align import SubspaceMap
from unlock_eval.methods.unlock.pack import REQUIRED_FIELDS, CapabilityPack, compose
from unlock_eval.methods.unlock.steer import unit_directions

TARGET = {"embedded": "gemma3-270m", "gguf_sha256": "a" * 64, "conversion": 2}


def make_pack(seed=0, layers=3, d=8, d_source=6, target=TARGET, native=False) -> CapabilityPack:
    g = torch.Generator().manual_seed(seed)
    k = 2
    smap = None
    if not native:
        smap = SubspaceMap(
            torch.randn(layers, k, d_source, generator=g),
            torch.randn(layers, k, k, generator=g),
            torch.randn(layers, k, d, generator=g),
            [0, 1, 3][:layers],
            4,
            {"k": k},
        )
    target_key = MasterKey(torch.randn(layers, d, generator=g), {"aggregator": "mean", "n": 8})
    source_key = MasterKey(torch.randn(4, d_source, generator=g), {"aggregator": "mean", "n": 8})
    provenance = {
        "unlock_eval_version": "0.1.0",
        "created": "2026-12-05T00:00:00+00:00",
        "models": {
            "target": {"spec": "gemma3-270m", "identity": target, "revision": None},
            "source": {"spec": "smollm2-135m-instruct", "identity": {"gguf_sha256": "b" * 64}, "revision": None},
            "source_locked": {"spec": "smollm2-135m-instruct", "identity": {"gguf_sha256": "b" * 64}, "revision": None},
        },
        "target_shape": {"num_layers": layers, "hidden_size": d},
        "hyperparameters": {"k": k, "n": 8, "aggregator": "mean"},
        "templates": {"locked": "Q: {question}", "unlocked": "Think. Q: {question}"},
        "extraction": {"extract_from": "arith", "n": 8, "questions_sha256": "c" * 64, "model_induced": False},
        "dtypes": {"evaluation": "float32"},
        "diagnostics": None,
        "hashes": {"source_key": "x"},
    }
    return CapabilityPack(target_key, source_key, smap, torch.rand(layers, generator=g) + 1, provenance)


def test_round_trip_is_bit_for_bit(tmp_path):
    pack = make_pack()
    first = tmp_path / "a.safetensors"
    sha = pack.save(first)
    assert sha == file_sha256(first)
    loaded = CapabilityPack.load(first)
    for name in ("target_key", "source_key"):
        assert torch.equal(getattr(loaded, name).vectors, getattr(pack, name).vectors)
        assert getattr(loaded, name).metadata == getattr(pack, name).metadata
    for name in ("Vs", "M", "Vt"):
        assert torch.equal(getattr(loaded.subspace_map, name), getattr(pack.subspace_map, name))
    assert loaded.subspace_map.layer_map == [0, 1, 3] and loaded.subspace_map.num_source_layers == 4
    assert torch.equal(loaded.target_norms, pack.target_norms)
    assert loaded.provenance == pack.provenance
    second = tmp_path / "b.safetensors"
    assert loaded.save(second) == sha  # written again: the same bytes
    assert first.read_bytes() == second.read_bytes()


def test_native_pack_has_no_map(tmp_path):
    path = tmp_path / "n.safetensors"
    make_pack(native=True).save(path)
    assert CapabilityPack.load(path).subspace_map is None


@pytest.mark.parametrize("name", ["key.pt", "key.pkl", "key.bin", "key.pth"])
def test_pickle_named_file_is_refused_before_reading(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x80\x04not read")
    with pytest.raises(ConfigError, match=r"pickle file name .* never unpickles") as info:
        CapabilityPack.load(path, "key")
    assert str(info.value).startswith(f"key={path}:") and "\n" not in str(info.value)


def test_gguf_and_other_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="llama.cpp's format"):
        CapabilityPack.load(tmp_path / "k.gguf")
    with pytest.raises(ConfigError, match="expected a .safetensors capability pack"):
        CapabilityPack.load(tmp_path / "k.json")
    with pytest.raises(ConfigError, match="no such file"):
        CapabilityPack.load(tmp_path / "missing.safetensors")


def test_corrupt_and_modified_files_are_one_line(tmp_path):
    path = tmp_path / "p.safetensors"
    make_pack().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ConfigError, match="corrupt or not a capability pack") as info:
        CapabilityPack.load(path)
    assert "\n" not in str(info.value)
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF  # one weight changed: the checksum says so
    path.write_bytes(bytes(flipped))
    with pytest.raises(ConfigError, match="checksum mismatch"):
        CapabilityPack.load(path)


def test_a_cache_artifact_is_not_a_pack(tmp_path):
    path = tmp_path / "key.safetensors"
    MasterKey(torch.randn(3, 8)).save(path)
    with pytest.raises(ConfigError, match="a MasterKey file, not a capability pack"):
        CapabilityPack.load(path)


@pytest.mark.parametrize("field", list(REQUIRED_FIELDS))
def test_each_missing_metadata_field_is_named(tmp_path, field):
    path = tmp_path / "p.safetensors"
    make_pack().save(path)
    tensors, meta = load_artifact(path)
    del meta[field]
    save_artifact(path, tensors, meta)
    with pytest.raises(ConfigError, match=f"metadata field '{field}' is missing"):
        CapabilityPack.load(path)


def test_shape_in_metadata_must_match_the_directions(tmp_path):
    path = tmp_path / "p.safetensors"
    make_pack().save(path)
    tensors, meta = load_artifact(path)
    meta["target_shape"] = {"num_layers": 4, "hidden_size": 8}
    save_artifact(path, tensors, meta)
    with pytest.raises(ConfigError, match="target_shape says"):
        CapabilityPack.load(path)


def test_target_identity_and_shape_checks_name_what_differs():
    pack = make_pack()
    pack.check_target(dict(TARGET), "gemma3-270m")  # the same model
    pack.check_target({"gguf_sha256": TARGET["gguf_sha256"], "conversion": 2}, "/models/gemma.gguf")  # its file
    with pytest.raises(ConfigError, match=r"made for target gemma3-270m .* another model") as info:
        pack.check_target({"files": {"model.safetensors": "d" * 64}}, "/models/other", "key=p.safetensors")
    assert str(info.value).startswith("key=p.safetensors:") and "key_target_check=shape" in str(info.value)
    with pytest.raises(ConfigError, match="steers 3 decoder layers; target t has 4"):
        pack.check_shape(4, 8, "t")
    with pytest.raises(ConfigError, match="hidden size 8; target t has 16"):
        pack.check_shape(3, 16, "t")


def test_composition_of_a_pack_with_itself_at_half_weights_is_the_pack():
    pack = make_pack()
    pack.target_key.vectors[1] = 0.0  # a zero layer stays unsteered
    composed = compose([pack, pack], [0.5, 0.5], ["a", "a"])
    layers = range(pack.num_layers)
    ours = unit_directions(composed, layers, normalize=False)
    theirs = unit_directions(pack.target_key, layers)
    assert sorted(ours) == sorted(theirs) == [0, 2]
    for layer in theirs:
        assert torch.equal(ours[layer], theirs[layer])  # bit for bit


def test_composition_weights_scale_like_control_vectors():
    a, b = make_pack(0), make_pack(1)
    composed = compose([a, b], [2.0, -1.0], ["a", "b"]).vectors.double()
    ua = a.target_key.vectors.double() / a.target_key.vectors.double().norm(dim=-1, keepdim=True)
    ub = b.target_key.vectors.double() / b.target_key.vectors.double().norm(dim=-1, keepdim=True)
    torch.testing.assert_close(composed, (2 * ua - ub), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(composed.norm(dim=-1), torch.ones(3, dtype=torch.float64))  # not normalised again


def test_packs_for_different_targets_do_not_compose():
    a = make_pack()
    other = make_pack(target={"files": {"model.safetensors": "e" * 64}})
    with pytest.raises(ConfigError, match="a was made for target gemma3-270m, b for gemma3-270m: one target only"):
        compose([a, other], [1, 1], ["a", "b"])
    wide = make_pack(d=16)
    with pytest.raises(ConfigError, match="different shapes"):
        compose([a, wide], [1, 1], ["a", "b"])


def test_cosine_per_layer():
    a = make_pack()
    b = copy.deepcopy(a)
    b.target_key = MasterKey(-a.target_key.vectors)
    torch.testing.assert_close(a.cosine(a), torch.ones(3))
    torch.testing.assert_close(a.cosine(b), -torch.ones(3))
