"""alpha_profile: parsing, the named profiles, and steering with factors per layer (equal factors: a scalar alpha)."""

import pytest
import torch

from unlock_eval import MasterKey, find_decoder_layers
from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.profiles import PROFILES, layer_factors, parse_profile
from unlock_eval.methods.unlock.steer import steer

from tiny_models import char_tokenizer, tiny_model

PROMPTS = ["Question: what is 2+2?\nAnswer:", "Hi there"]


def test_parse_names_and_lists():
    assert parse_profile("alpha_profile", "middle") == "middle"
    assert parse_profile("alpha_profile", "1;0.5;0") == [1.0, 0.5, 0.0]
    assert parse_profile("alpha_profile", "[1, 2e-1]") == [1.0, 0.2]
    assert parse_profile("alpha_profile", [1, 0]) == [1.0, 0.0]
    for bad in ("steep", "1;x", "", "1;nan"):
        with pytest.raises(ConfigError, match="alpha_profile"):
            parse_profile("alpha_profile", bad)


def test_named_profiles_shapes():
    assert list(layer_factors("flat", 4).values()) == [1.0] * 4
    assert list(layer_factors("ramp_up", 4).values()) == [0.25, 0.5, 0.75, 1.0]
    assert list(layer_factors("ramp_down", 4).values()) == [1.0, 0.75, 0.5, 0.25]
    middle = list(layer_factors("middle", 5).values())
    assert middle[2] == 1.0 and middle[0] == middle[4] == pytest.approx(0.2) and middle[1] == middle[3]
    for name in PROFILES:
        factors = layer_factors(name, 7)
        assert len(factors) == 7 and all(0 < f <= 1 for f in factors.values())


def test_a_list_must_give_one_factor_per_layer():
    assert layer_factors([1.0, 0.5, 0.0], 3) == {0: 1.0, 1: 0.5, 2: 0.0}
    with pytest.raises(ConfigError, match="2 factors given; the target has 3 decoder layers"):
        layer_factors([1.0, 0.5], 3)


def logits(model, tok, key, **kwargs):
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with steer(model, key, **kwargs), torch.no_grad():
        return model(**enc).logits


@pytest.mark.parametrize("mode", ["prefill_last", "additive_all"])
@pytest.mark.parametrize("arithmetic", ["float32", "model"])
def test_equal_factors_are_a_scalar_alpha(mode, arithmetic):
    model, tok = tiny_model("llama", layers=4), char_tokenizer()
    key = MasterKey(torch.randn(4, model.config.hidden_size, generator=torch.Generator().manual_seed(0)))
    common = {"mode": mode, "arithmetic": arithmetic}
    scalar = logits(model, tok, key, alpha=0.1, **common)
    ones = logits(model, tok, key, alpha=0.1, layer_alphas=layer_factors("flat", 4), **common)
    assert torch.equal(ones, scalar)  # bit for bit
    halves = logits(model, tok, key, alpha=0.2, layer_alphas=layer_factors([0.5] * 4, 4), **common)
    assert torch.equal(halves, scalar)  # 0.2 * 0.5 is 0.1 exactly
    assert not torch.equal(logits(model, tok, key, alpha=0.2, **common), scalar)


def test_factors_steer_each_layer_at_its_own_strength():
    model, tok = tiny_model("llama", layers=4), char_tokenizer()
    key = MasterKey(torch.randn(4, model.config.hidden_size, generator=torch.Generator().manual_seed(1)))
    zeros_but_two = logits(model, tok, key, alpha=0.3, layer_alphas={0: 0.0, 1: 0.0, 2: 1.0, 3: 0.0})
    assert torch.equal(zeros_but_two, logits(model, tok, key, alpha=0.3, layers=[2]))
    with steer(model, key, alpha=0.3, layer_alphas={0: 0.0, 1: 1.0, 2: 0.0, 3: 2.0}) as handle:
        enc = tok(PROMPTS, return_tensors="pt", padding=True)
        with torch.no_grad():
            model(**enc)
    assert handle.steered_calls == 2  # layers at factor 0 are not hooked
    assert len(find_decoder_layers(model)) == 4
    ramp = logits(model, tok, key, alpha=0.3, layer_alphas=layer_factors("ramp_up", 4))
    assert not torch.equal(ramp, logits(model, tok, key, alpha=0.3))
