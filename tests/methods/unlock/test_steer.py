"""Injection modes on tiny random models of several architectures: formulas, positions, batching, hook hygiene."""

import pytest
import torch

from unlock_eval import MasterKey, find_decoder_layers
from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.steer import steer

from tiny_models import BUILDERS, char_tokenizer, tiny_model

ARCHS = list(BUILDERS)
PROMPTS = ["Question: what is 2+2?\nAnswer:", "Hi", "Question: x?\nAnswer:"]


def hidden(model, tok, prompts):
    enc = tok(prompts, return_tensors="pt", padding=True)
    pos = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(**enc, position_ids=pos, output_hidden_states=True)
    return out.hidden_states[1:], out.logits


def random_key(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = len(find_decoder_layers(model))
    return MasterKey(torch.randn(L, model.config.hidden_size, generator=g))


@pytest.mark.parametrize("arch", ARCHS)
def test_alpha_zero_leaves_logits_unchanged(arch):
    model, tok = tiny_model(arch), char_tokenizer()
    _, base = hidden(model, tok, PROMPTS)
    for mode in ("prefill_last", "additive_all"):
        with steer(model, random_key(model), alpha=0.0, mode=mode) as handle:
            _, steered = hidden(model, tok, PROMPTS)
        torch.testing.assert_close(steered, base, atol=1e-5, rtol=1e-5)
        assert handle.steered_calls == len(find_decoder_layers(model))  # the hooks ran, with alpha 0


@pytest.mark.parametrize("arch", ARCHS)
def test_prefill_last_formula_norm_and_earlier_positions(arch):
    model, tok = tiny_model(arch), char_tokenizer()
    key = random_key(model)
    layer, alpha = 1, 0.3
    base, _ = hidden(model, tok, PROMPTS)
    with steer(model, key, alpha=alpha, mode="prefill_last", layers=[layer]):
        got, _ = hidden(model, tok, PROMPTS)
    h = base[layer][:, -1].double()
    r = key.vectors[layer].double()
    expected = h.norm(dim=-1, keepdim=True) * torch.nn.functional.normalize(
        h / h.norm(dim=-1, keepdim=True) + alpha * r / r.norm(), dim=-1
    )
    torch.testing.assert_close(got[layer][:, -1].double(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[layer][:, -1].norm(dim=-1), base[layer][:, -1].norm(dim=-1), atol=1e-4, rtol=1e-5)
    # every layer: positions before the last are untouched (causal), layers before `layer` entirely
    for l in range(len(base)):
        torch.testing.assert_close(got[l][:, :-1], base[l][:, :-1], atol=1e-6, rtol=1e-6)
    for l in range(layer):
        torch.testing.assert_close(got[l], base[l])
    assert not torch.allclose(got[-1][:, -1], base[-1][:, -1])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_additive_all_formula_every_position(arch):
    model, tok = tiny_model(arch), char_tokenizer()
    key = random_key(model, 1)
    base, _ = hidden(model, tok, PROMPTS)
    with steer(model, key, alpha=0.2, mode="additive_all", layers=[0]):
        got, _ = hidden(model, tok, PROMPTS)
    h = base[0].double()
    r = key.vectors[0].double()
    expected = h + 0.2 * h.norm(dim=-1, keepdim=True) * r / r.norm()
    torch.testing.assert_close(got[0].double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
@pytest.mark.parametrize("mode", ["prefill_last", "additive_all"])
def test_batched_left_padded_steered_generation_equals_single(arch, mode):
    model, tok = tiny_model(arch), char_tokenizer()
    key = random_key(model, 2)
    gen = dict(max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
    with steer(model, key, alpha=0.5, mode=mode):
        enc = tok(PROMPTS, return_tensors="pt", padding=True)
        batched = model.generate(**enc, **gen)[:, enc["input_ids"].shape[1] :]
        singles = []
        for p in PROMPTS:
            e = tok([p], return_tensors="pt")
            singles.append(model.generate(**e, **gen)[0, e["input_ids"].shape[1] :])
    for b, s in zip(batched, singles):
        assert b.tolist() == s.tolist()
    with torch.no_grad():
        plain = model.generate(**enc, **gen)[:, enc["input_ids"].shape[1] :]
    assert plain.tolist() != batched.tolist(), "alpha=0.5 should change some greedy continuation"


def test_prefill_last_touches_prefill_only():
    model, tok = tiny_model("llama"), char_tokenizer()
    key = random_key(model)
    L = len(find_decoder_layers(model))
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with steer(model, key, alpha=0.5, mode="prefill_last") as handle:
        model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert handle.steered_calls == L  # one prefill pass, every layer; 4 decode steps untouched
    with steer(model, key, alpha=0.5, mode="additive_all") as handle:
        model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert handle.steered_calls == 5 * L


def test_one_token_prompt_is_steered_as_prefill():
    model, tok = tiny_model("llama"), char_tokenizer()
    enc = tok(["a"], return_tensors="pt")
    with steer(model, random_key(model), alpha=0.5) as handle:
        model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert handle.steered_calls == len(find_decoder_layers(model))


def test_hooks_removed_also_on_exception():
    model = tiny_model("llama")
    layers = find_decoder_layers(model)
    with pytest.raises(RuntimeError, match="boom"):
        with steer(model, random_key(model), alpha=0.5):
            assert all(len(l._forward_hooks) == 1 for l in layers)
            raise RuntimeError("boom")
    assert all(len(l._forward_hooks) == 0 for l in layers)


def test_explicit_positions_override():
    model, tok = tiny_model("llama"), char_tokenizer()
    key = random_key(model)
    base, _ = hidden(model, tok, PROMPTS)
    with steer(model, key, alpha=0.4, layers=[0]) as handle:
        handle.positions = torch.tensor([3, 28, 12])
        got, _ = hidden(model, tok, PROMPTS)
    for row, col in enumerate([3, 28, 12]):
        assert not torch.allclose(got[0][row, col], base[0][row, col])
        torch.testing.assert_close(got[0][row, col + 1 :], base[0][row, col + 1 :])


def test_bad_inputs_are_refused_with_clear_messages():
    model = tiny_model("llama")
    key = random_key(model)
    with pytest.raises(
        ConfigError, match=r"key of shape \[3, 32\] does not match the model .*4 layers, hidden size 32"
    ):
        with steer(model, MasterKey(torch.randn(3, 32))):
            pass
    with pytest.raises(ConfigError, match=r"key of shape \[4, 16\]"):
        with steer(model, MasterKey(torch.randn(4, 16))):
            pass
    with pytest.raises(ConfigError, match="mode='last'.*prefill_last, additive_all"):
        with steer(model, key, mode="last"):
            pass
    with pytest.raises(ConfigError, match="alpha=inf: expected a finite number"):
        with steer(model, key, alpha=float("inf")):
            pass
    with pytest.raises(ConfigError, match=r"layers must be indices in \[0, 3\]"):
        with steer(model, key, layers=[7]):
            pass
    assert all(len(l._forward_hooks) == 0 for l in find_decoder_layers(model))


def test_find_layers_override_and_error():
    model = tiny_model("gpt2")
    assert find_decoder_layers(model, "transformer.h") is model.transformer.h
    with pytest.raises(ConfigError, match="layers_path='model.layers' does not name"):
        find_decoder_layers(model, "model.layers")
    with pytest.raises(ConfigError, match="cannot find the decoder layers of Linear"):
        find_decoder_layers(torch.nn.Linear(2, 2))


def test_vectors_follow_the_layer_dtype():
    model, tok = tiny_model("llama").to(torch.bfloat16), char_tokenizer()
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    with steer(model, random_key(model), alpha=0.5, mode="prefill_last") as handle:
        with torch.no_grad():
            logits = model(**enc).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    assert handle.steered_calls == len(find_decoder_layers(model))


@pytest.mark.parametrize("mode", ["prefill_last", "additive_all"])
def test_one_alpha_per_row_equals_each_alpha_alone(mode):
    """A batch carrying several alpha points gives, row by row, the states and greedy tokens of each alpha alone."""
    model, tok = tiny_model("llama"), char_tokenizer()
    key, alphas = random_key(model, 3), [0.0, 0.3, 1.0]
    prompts = PROMPTS * len(alphas)  # row i*3 + j: prompt j under alphas[i]
    rows = torch.tensor([a for a in alphas for _ in PROMPTS])
    with steer(model, key, alpha=rows, mode=mode) as handle:
        states, _ = hidden(model, tok, prompts)
    assert isinstance(handle.alpha, torch.Tensor)
    gen = dict(max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
    enc = tok(prompts, return_tensors="pt", padding=True)
    with steer(model, key, alpha=rows, mode=mode):
        shared = model.generate(**enc, **gen)[:, enc["input_ids"].shape[1] :]
    for i, alpha in enumerate(alphas):
        part = slice(i * len(PROMPTS), (i + 1) * len(PROMPTS))
        with steer(model, key, alpha=alpha, mode=mode):
            alone, _ = hidden(model, tok, PROMPTS)
            e = tok(PROMPTS, return_tensors="pt", padding=True)
            separate = model.generate(**e, **gen)[:, e["input_ids"].shape[1] :]
        for layer in range(len(alone)):
            torch.testing.assert_close(states[layer][part], alone[layer], atol=1e-5, rtol=1e-5)
        assert shared[part].tolist() == separate.tolist()
    assert shared[:3].tolist() != shared[6:].tolist()  # the alphas do differ


def test_per_row_alpha_errors():
    model, tok = tiny_model("llama"), char_tokenizer()
    key = random_key(model)
    with pytest.raises(ConfigError, match="one per batch row"):
        with steer(model, key, alpha=torch.tensor([[0.1, 0.2]])):
            pass
    with pytest.raises(ConfigError, match="finite"):
        with steer(model, key, alpha=torch.tensor([0.1, float("nan")])):
            pass
    with pytest.raises(ConfigError, match="2 alphas for a batch of 3 rows"):
        with steer(model, key, alpha=torch.tensor([0.1, 0.2])):
            hidden(model, tok, PROMPTS)
