"""Final-token capture semantics, artifact round trips, corruption detection and the disk cache."""

import pytest
import torch

from unlock_eval import MasterKey, SubspaceMap, capture_final_states, find_decoder_layers
from unlock_eval.cache import ArtifactCache, CorruptArtifactError, load_artifact, save_artifact
from unlock_eval.errors import ConfigError

from tiny_models import BUILDERS, char_tokenizer, tiny_model

PROMPTS = ["Question: 3+4?\nAnswer:", "A", "Question: how many apples are left?\nAnswer:", "xyz"]


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_capture_equals_output_hidden_states_one_at_a_time(arch):
    model, tok = tiny_model(arch, layers=3), char_tokenizer()
    states = capture_final_states(model, tok, PROMPTS, batch_size=3)
    assert states.shape == (3, len(PROMPTS), 32) and states.dtype == torch.float32
    for i, p in enumerate(PROMPTS):
        with torch.no_grad():
            hs = model(**tok([p], return_tensors="pt"), output_hidden_states=True).hidden_states[1:]
        ref = torch.stack([h[0, -1] for h in hs])
        torch.testing.assert_close(states[:, i], ref, atol=1e-5, rtol=1e-5)


def test_capture_stops_at_deepest_layer_and_never_runs_lm_head():
    model, tok = tiny_model("llama", layers=4), char_tokenizer()
    layers = find_decoder_layers(model)
    calls = {"head": 0, "last": 0}
    model.lm_head.register_forward_hook(lambda *a: calls.__setitem__("head", calls["head"] + 1))
    layers[3].register_forward_hook(lambda *a: calls.__setitem__("last", calls["last"] + 1))
    full = capture_final_states(model, tok, PROMPTS, batch_size=2)
    assert calls == {"head": 0, "last": 2}
    part = capture_final_states(model, tok, PROMPTS, batch_size=2, layers=[0, 2])
    assert calls == {"head": 0, "last": 2}  # layer 3 never ran for the partial capture
    torch.testing.assert_close(part, full[[0, 2]])


def test_capture_bad_inputs():
    model, tok = tiny_model("llama"), char_tokenizer()
    with pytest.raises(ConfigError, match="prompts is empty"):
        capture_final_states(model, tok, [])
    with pytest.raises(ConfigError, match=r"layers must be indices in \[0, 3\]"):
        capture_final_states(model, tok, ["a"], layers=[4])
    tok.padding_side = "right"
    with pytest.raises(ConfigError, match="padding_side must be 'left'"):
        capture_final_states(model, tok, ["a"])


def test_masterkey_and_map_round_trip(tmp_path):
    key = MasterKey(torch.randn(4, 6), {"aggregator": "mean", "n": 3, "templates": ["a", "b"]})
    key.save(tmp_path / "key.safetensors")
    back = MasterKey.load(tmp_path / "key.safetensors")
    torch.testing.assert_close(back.vectors, key.vectors)
    assert back.metadata == key.metadata
    smap = SubspaceMap.fit(torch.randn(4, 10, 6), torch.randn(3, 10, 5), k=3, metadata={"source": "s"})
    smap.save(tmp_path / "map.safetensors")
    back_map = SubspaceMap.load(tmp_path / "map.safetensors")
    torch.testing.assert_close(back_map.transfer(key).vectors, smap.transfer(key).vectors)
    assert back_map.layer_map == smap.layer_map and back_map.metadata == smap.metadata
    with pytest.raises(ConfigError, match="is not a SubspaceMap artifact"):
        SubspaceMap.load(tmp_path / "key.safetensors")


def test_truncated_or_modified_artifact_is_detected(tmp_path):
    path = tmp_path / "a.safetensors"
    save_artifact(path, {"x": torch.arange(100.0)}, {"what": "test"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(CorruptArtifactError, match="a.safetensors"):
        load_artifact(path)
    save_artifact(path, {"x": torch.arange(100.0)}, {"what": "test"})
    raw = bytearray(path.read_bytes())
    raw[-4:] = b"\x00\x00\x80\x7f"  # flip the last float's bytes: checksum must catch it
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptArtifactError, match="checksum mismatch"):
        load_artifact(path)


def test_cache_builds_once_and_rebuilds_corrupt(tmp_path):
    cache = ArtifactCache(tmp_path)
    built = []

    def build():
        built.append(1)
        return {"t": torch.ones(3)}, {"note": "x"}

    cache.get_or_build("states", "abc", build)
    tensors, meta = cache.get_or_build("states", "abc", build)
    assert len(built) == 1 and cache.hits == 1 and meta["note"] == "x"
    cache.path("states", "abc").write_bytes(b"garbage")
    cache.get_or_build("states", "abc", build)
    assert len(built) == 2 and cache.rebuilt_corrupt == 1
    assert not list((tmp_path / "states").glob("*.tmp"))  # nothing half-written left behind


def test_artifacts_get_normal_file_modes(tmp_path):
    import os

    path = tmp_path / "k.safetensors"
    MasterKey(torch.ones(2, 3)).save(path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # shareable cache, not mkstemp's private 0600
