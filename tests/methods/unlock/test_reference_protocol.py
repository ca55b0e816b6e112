"""protocol=reference and the arguments it is made of: each against a computation written here in the order of the
paper's official code (rishabbala/Steering-Vector-Transfer: hs_vector_simple.py, hs_svd.py, the models' forward)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from unlock_eval.data.prompts import CAPABILITIES, load_questions, render
from unlock_eval.errors import ConfigError
from unlock_eval.methods.unlock.masterkey import MasterKey
from unlock_eval.methods.unlock.spec import UnlockSpec
from unlock_eval.methods.unlock.steer import steer_rows


def spec(**given):
    return UnlockSpec(target="t", source="s", **given)


def test_the_preset_fills_what_is_not_given_and_a_given_argument_wins():
    ours = spec()
    assert (ours.pca_sign, ours.arithmetic, ours.key_dtype, ours.align_dtype) == ("mean", "float32", None, None)
    assert (ours.max_new_tokens, ours.stop_strings, ours.default_dtype) == (None, "task", "auto")
    ref = spec(protocol="reference")
    assert (ref.pca_sign, ref.arithmetic, ref.key_dtype, ref.align_dtype) == ("raw", "model", "bfloat16", "float32")
    assert (ref.max_new_tokens, ref.stop_strings, ref.default_dtype) == (None, "task", "bfloat16")
    assert (ours.extract_batch_size, ref.extract_batch_size) == (8, 1)  # the reference captures unpadded
    assert spec(protocol="reference", aggregator="pca", k=4).key_dtype == "float32"  # hs_vector_post_pca.py
    mixed = spec(protocol="reference", pca_sign="mean", key_dtype="fp32", arithmetic="float32")
    assert (mixed.pca_sign, mixed.key_dtype, mixed.arithmetic, mixed.align_dtype) == (
        "mean", "float32", "float32", "float32")  # fmt: skip
    two = spec(protocol="reference", source_locked="base")  # the post-training runs
    assert (two.shared_template, two.max_new_tokens, two.stop_strings) == ("unlocked", 4096, "none")
    assert two.locked_template == two.unlocked_template == CAPABILITIES["cot"].unlocked_template
    assert spec(source_locked="base").shared_template == "locked"  # ours: the locked prompt on both
    rebuilt = UnlockSpec(**two.as_dict())  # a recorded spec builds the same run again
    assert rebuilt.as_dict() == two.as_dict()


@pytest.mark.parametrize(
    "given, message",
    [
        ({"protocol": "paper"}, "protocol='paper': allowed values are unlock-eval, reference"),
        ({"key_dtype": "int8"}, "key_dtype='int8': allowed values are float32"),
        ({"pca_sign": "up"}, "pca_sign='up': allowed values are mean, raw"),
        ({"arithmetic": "fp8"}, "arithmetic='fp8': allowed values are float32, model"),
        ({"stop_strings": "all"}, "stop_strings='all': allowed values are task, none"),
        ({"max_new_tokens": 0}, "max_new_tokens=0: expected an integer >= 1"),
    ],
)
def test_bad_values_name_the_argument(given, message):
    with pytest.raises(ConfigError, match=message):
        spec(**given)


def centred_svd_top(diff: torch.Tensor) -> torch.Tensor:
    """The top right singular vector of the centred differences, per layer, as torch.linalg.svd returns it."""
    centred = diff - diff.mean(dim=1, keepdim=True)
    return torch.stack([torch.linalg.svd(layer, full_matrices=False)[2][0] for layer in centred])


def test_raw_pca_sign_is_the_svds_own_and_the_flipped_layers_are_listed():
    g = torch.Generator().manual_seed(3)
    locked, unlocked = torch.randn(6, 12, 16, generator=g), torch.randn(6, 12, 16, generator=g) + 0.3
    raw = MasterKey.from_states(locked, unlocked, aggregator="pca", pca_sign="raw")
    svd = centred_svd_top(unlocked.double() - locked.double())
    torch.testing.assert_close(raw.vectors, svd.float(), rtol=0, atol=0)
    ours = MasterKey.from_states(locked, unlocked, aggregator="pca")
    mean = (unlocked - locked).double().mean(dim=1)
    flipped = [layer for layer in range(6) if float(svd[layer] @ mean[layer]) < 0]
    assert 0 < len(flipped) < 6  # this seed has both cases
    assert raw.metadata["pca_sign_flipped_layers"] == ours.metadata["pca_sign_flipped_layers"] == flipped
    for layer in range(6):
        sign = -1.0 if layer in flipped else 1.0
        torch.testing.assert_close(ours.vectors[layer], sign * raw.vectors[layer], rtol=0, atol=0)
    model_raw = MasterKey.from_states(locked, unlocked, "pca", pca_sign="raw", arithmetic="model")
    torch.testing.assert_close(model_raw.vectors, centred_svd_top(unlocked - locked), rtol=0, atol=0)  # float32 SVD


def test_model_arithmetic_mean_key_follows_the_references_bf16_steps():
    g = torch.Generator().manual_seed(5)
    locked = torch.randn(3, 7, 10, generator=g).bfloat16().float()  # states of a bf16 model, as captured
    unlocked = (torch.randn(3, 7, 10, generator=g) * 4).bfloat16().float()
    expected = torch.zeros(3, 10)  # float32 accumulator += (bf16 difference / n) in bf16, one prompt at a time
    for i in range(7):
        expected += (unlocked[:, i].bfloat16() - locked[:, i].bfloat16()) / 7
    key = MasterKey.from_states(locked, unlocked, arithmetic="model", states_dtype=torch.bfloat16)
    torch.testing.assert_close(key.vectors, expected, rtol=0, atol=0)
    ours = MasterKey.from_states(locked, unlocked)
    assert not torch.equal(ours.vectors, expected)  # the float64 mean differs in the last bits


def test_model_arithmetic_injection_is_the_references_bf16_formula():
    g = torch.Generator().manual_seed(7)
    h = (torch.randn(4, 32, generator=g) * 30).bfloat16()
    key = torch.randn(32, generator=g)
    r = key.reshape(1, -1).type_as(h)
    hnorm = torch.norm(h, dim=-1, keepdim=True)
    rnorm = torch.norm(r, dim=-1, keepdim=True)
    expected = h / hnorm + (r / rnorm) * 0.3
    expected = expected / torch.norm(expected, dim=-1, keepdim=True) * hnorm
    assert torch.equal(steer_rows(h, key, 0.3, True, "model"), expected)
    per_row = steer_rows(h, key, torch.full((4, 1), 0.3), True, "model")  # shared alphas: one per row
    assert torch.equal(per_row, expected)
    ours = steer_rows(h, key / key.norm(), 0.3, True, "float32")
    assert ours.dtype == torch.bfloat16 and not torch.equal(ours, expected)


# ------------------------------------------------------------------------------------------------ end to end


def final_states(path: str, dtype: torch.dtype, prompts: list[str]) -> torch.Tensor:
    """`[L, n, d]`: hidden_states[1:][:, -1] of one prompt at a time, the model in `dtype` (hs_vector_simple.py)."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    tok = AutoTokenizer.from_pretrained(path)
    rows = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt")
            hidden = model(**ids, output_hidden_states=True).hidden_states[1:]
            rows.append(torch.stack([layer[0, -1] for layer in hidden]))
    return torch.stack(rows, dim=1)  # in `dtype`


def reference_transform(hs: torch.Tensor, ht: torch.Tensor, k: int) -> torch.Tensor:
    """hs_svd.py for one layer pair, float32: Vs^T pinv(Hs Vs^T) (Ht Vt^T) Vt."""
    vs = torch.linalg.svd(hs, full_matrices=False)[2][:k]
    vt = torch.linalg.svd(ht, full_matrices=False)[2][:k]
    return vs.T @ torch.linalg.pinv(hs @ vs.T) @ (ht @ vt.T) @ vt


def reference_answers(world, questions, prompts, k, alpha, max_new_tokens):
    """The steered greedy answers, every step in the reference's order: bf16 mean key, float32 map, bf16 target."""
    cot = CAPABILITIES["cot"]
    locked = final_states(world["src"], torch.bfloat16, [render(cot.locked_template, q) for q in questions])
    unlocked = final_states(world["src"], torch.bfloat16, [render(cot.unlocked_template, q) for q in questions])
    key = torch.zeros(locked.shape[0], locked.shape[2])
    for i in range(len(questions)):
        key += (unlocked[:, i] - locked[:, i]) / len(questions)
    hs = final_states(world["src"], torch.float32, [render(cot.locked_template, q) for q in questions])
    ht = final_states(world["tgt"], torch.float32, [render(cot.locked_template, q) for q in questions])
    ls_n, lt_n = hs.shape[0], ht.shape[0]
    mapped = []
    for lb in range(lt_n):
        ls = min((ls_n - 1) * lb // (lt_n - 1), ls_n - 1)
        mapped.append(key[ls].reshape(1, -1) @ reference_transform(hs[ls], ht[lb], k))
    vectors = torch.cat(mapped)
    model = AutoModelForCausalLM.from_pretrained(world["tgt"], dtype=torch.bfloat16).eval()
    tok = AutoTokenizer.from_pretrained(world["tgt"])

    def hook_for(layer):
        def hook(_module, _args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            if hidden.shape[1] == 1:  # decoding: the reference steers the prefill only
                return None
            r = vectors[layer].reshape(1, -1).type_as(hidden)
            h = hidden[:, -1, :]
            hnorm, rnorm = torch.norm(h, dim=-1, keepdim=True), torch.norm(r, dim=-1, keepdim=True)
            new = h / hnorm + (r / rnorm) * alpha
            hidden[:, -1, :] = new / torch.norm(new, dim=-1, keepdim=True) * hnorm
            return output

        return hook

    hooks = [block.register_forward_hook(hook_for(i)) for i, block in enumerate(model.transformer.h)]
    answers, logits = [], []
    try:
        with torch.no_grad():
            for prompt in prompts:
                ids = tok(prompt, return_tensors="pt")
                out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
                answers.append(tok.decode(out[0, ids["input_ids"].shape[1] :]))
                logits.append(model(**ids).logits[0, -1])
    finally:
        for handle in hooks:
            handle.remove()
    return answers, vectors, torch.stack(logits)


def steered_logits(lm, prompts) -> torch.Tensor:
    """The last position's logits of each prompt's steered prefill in an UnlockLM."""
    rows = []
    with torch.no_grad(), lm.steering.steer(lm.model):
        for prompt in prompts:
            ids = lm.tokenizer(prompt, return_tensors="pt")
            rows.append(lm.model(**ids).logits[0, -1].to(torch.bfloat16))
    return torch.stack(rows)


def test_preset_answers_equal_the_reference_computed_step_by_step(tiny_world, tmp_path):
    from lm_eval.api.instance import Instance

    from unlock_eval.model_adapters.unlock import UnlockLM

    world, k, alpha, tokens = tiny_world, 4, 0.5, 8
    questions = load_questions(world["questions"], 8)
    prompts = [render(CAPABILITIES["cot"].locked_template, q) for q in ["what is two plus two", "name a blue fish"]]
    expected, vectors, logits = reference_answers(world, questions, prompts, k, alpha, tokens)
    lm = UnlockLM(source=world["src"], target=world["tgt"], protocol="reference", alpha=alpha, k=k, n=8,
                  extract_from=world["questions"], cache_dir=str(tmp_path), device="cpu")  # fmt: skip
    assert lm.model.dtype == torch.bfloat16
    record = lm.run_record.to_dict()
    assert record["hyperparameters"]["protocol"] == "reference"
    assert record["details"]["dtypes"] == {
        "evaluation": "bfloat16",
        "key": {world["src"]: "bfloat16"},
        "alignment": {world["src"]: "float32", world["tgt"]: "float32"},
    }
    torch.testing.assert_close(lm.steering.artifacts.target_key.vectors, vectors, rtol=1e-4, atol=1e-5)
    gen = {"until": [], "max_gen_toks": tokens, "do_sample": False}
    requests = [Instance("generate_until", {}, (prompt, gen), i) for i, prompt in enumerate(prompts)]
    assert lm.generate_until(requests) == expected
    assert torch.equal(steered_logits(lm, prompts), logits)  # the steered prefill, to the last bit
    ours = UnlockLM(source=world["src"], target=world["tgt"], alpha=alpha, k=k, n=8, extract_from=world["questions"],
                    cache_dir=str(tmp_path), device="cpu")  # fmt: skip
    assert ours.model.dtype == torch.float32  # dtype=auto: the checkpoint's own
    assert not torch.equal(steered_logits(ours, prompts), logits)  # our defaults are told apart from the reference
