"""`--model logit_transfer` (proxy-tuning) on tiny models of three architectures that share a tokenizer: mixed
logits equal a manual three-model computation at every step, batching changes nothing, scoring is mixed the same
way, and what cannot work is refused in one line."""

import json

import pytest
import torch
from lm_eval.api.instance import Instance

from unlock_eval.data.prompts import CAPABILITIES, render
from unlock_eval.errors import ConfigError
from unlock_eval.methods.logit_transfer.mix import SourceStepper, mixed_logits

from adapter_fixtures import save_tiny, write_tasks
from tiny_models import char_tokenizer, tiny_model

LOCKED, UNLOCKED = CAPABILITIES["cot"].locked_template, CAPABILITIES["cot"].unlocked_template
QUESTIONS = ["what is one plus two", "count to four, slowly please", "hi", "is ten more than five"]
GEN = {"until": ["\n\n"], "max_gen_toks": 6, "do_sample": False}


def save_sharp(path, arch: str, seed: int) -> str:
    """A tiny model with weights 6x the usual init: its greedy answers depend on the prompt (at the usual scale
    every prompt decodes to the same near-uniform guess, and a mix-up of rows could not be seen)."""
    model = tiny_model(arch, 2, 32, seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(6)
    model.save_pretrained(path)
    char_tokenizer().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("logits")
    return {
        "target": save_sharp(root / "target", "gpt2", 21),
        "source": save_sharp(root / "source", "llama", 22),
        "source_locked": save_sharp(root / "locked", "qwen2", 23),
        "tasks": write_tasks(root / "tasks"),
        "root": root,
    }


def left_pad(rows):
    length = max(len(r) for r in rows)
    ids = torch.tensor([[0] * (length - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def last_logits(model, ids):
    return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


@pytest.mark.parametrize("sample", [False, True])
@pytest.mark.parametrize("regime", ["model_induced", "prompt_induced"])
def test_mixed_logits_equal_a_manual_three_model_computation_at_every_step(regime, sample):
    """Greedy and sampled: the logits every processor and sampler sees are the mixed ones, at every step."""
    tok = char_tokenizer()
    target, source = tiny_model("gpt2", 2, 32, 1), tiny_model("llama", 2, 32, 2)
    locked = tiny_model("qwen2", 2, 32, 3) if regime == "model_induced" else source
    target_rows = [tok(render(LOCKED, q))["input_ids"] for q in QUESTIONS]
    if regime == "model_induced":  # both sources read the target's prompt
        source_rows, locked_rows = target_rows, target_rows
    else:  # one source model, the unlocked and the locked template: prompts of other lengths than the target's
        source_rows = [tok(render(UNLOCKED, q))["input_ids"] for q in QUESTIONS]
        locked_rows = [tok("Q: " + q + "\n")["input_ids"] for q in QUESTIONS]
    lam, steps = 0.7, 5
    stepper = SourceStepper(source, locked, vocab=96)
    ids, mask = left_pad(target_rows)
    sampling = {"do_sample": True, "temperature": 0.7, "top_k": 20} if sample else {"do_sample": False}
    torch.manual_seed(0)
    with torch.no_grad(), mixed_logits(target, stepper, (*left_pad(source_rows), *left_pad(locked_rows)), lam):
        out = target.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=steps, pad_token_id=0, **sampling,
            output_logits=True, return_dict_in_generate=True, eos_token_id=None,
        )  # fmt: skip
    assert stepper.batched is (regime == "prompt_induced")
    assert stepper.forward_calls == (1 if stepper.batched else 2) * steps  # a prefill, then one call per new token
    generated = out.sequences[:, ids.shape[1] :]
    with torch.no_grad():
        for row in range(len(QUESTIONS)):
            chosen = generated[row].tolist()
            for step in range(steps):
                done = chosen[:step]
                manual = last_logits(target, target_rows[row] + done) + lam * (
                    last_logits(source, source_rows[row] + done) - last_logits(locked, locked_rows[row] + done)
                )
                torch.testing.assert_close(out.logits[step][row].float(), manual, atol=2e-4, rtol=1e-4)
                assert sample or chosen[step] == int(manual.argmax())


def make_lm(world, **extra):
    from unlock_eval.model_adapters.logit_transfer import LogitTransferLM

    args = {"target": world["target"], "source": world["source"], "device": "cpu", "lam": 0.8}
    args.update(extra)
    return LogitTransferLM(**args, cache_dir=str(world["root"] / "cache"))


def generation_requests():
    return [
        Instance("generate_until", {"question": q}, (render(LOCKED, q), dict(GEN)), i) for i, q in enumerate(QUESTIONS)
    ]


@pytest.mark.parametrize("locked", [None, "source_locked"])
def test_batched_greedy_generation_equals_per_prompt_generation(world, locked):
    extra = {"source_locked": world["source_locked"]} if locked else {}
    batched = make_lm(world, batch_size=4, **extra).generate_until(generation_requests())
    single = make_lm(world, batch_size=1, **extra).generate_until(generation_requests())
    assert batched == single and len(set(batched)) > 1  # answers differ by prompt: the test can see a mix-up


def manual_loglikelihood(target, source, locked, rows, lam):
    """(target ids, source ids, locked ids, continuation) -> log p(continuation) under the mixed logits."""
    t_ids, s_ids, l_ids, cont = rows
    total = 0.0
    with torch.no_grad():
        for j, token in enumerate(cont):
            done = cont[:j]
            mixed = last_logits(target, t_ids + done) + lam * (
                last_logits(source, s_ids + done) - last_logits(locked, l_ids + done)
            )
            total += float(torch.log_softmax(mixed, -1)[token])
    return total


@pytest.mark.parametrize("regime", ["model_induced", "prompt_induced"])
def test_loglikelihoods_equal_the_manual_computation(world, regime):
    from transformers import AutoModelForCausalLM

    extra = {"source_locked": world["source_locked"]} if regime == "model_induced" else {}
    lm = make_lm(world, batch_size=3, **extra)
    pairs = [(render(LOCKED, q), c) for q, c in zip(QUESTIONS, [" 3", " one two three four", " hello", " yes"])]
    requests = [
        Instance("loglikelihood", {"question": q}, pair, i) for i, (q, pair) in enumerate(zip(QUESTIONS, pairs))
    ]
    got = [value for value, _ in lm.loglikelihood(requests)]
    load = lambda p: AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32).eval()  # noqa: E731
    target, source = load(world["target"]), load(world["source"])
    locked = load(world["source_locked"]) if regime == "model_induced" else source
    tok = char_tokenizer()
    for (context, continuation), question, value in zip(pairs, QUESTIONS, got):
        moved = context[len(context.rstrip()) :]  # lm-eval scores the context's trailing newline as continuation
        t_ids, cont = tok(context.rstrip())["input_ids"], tok(moved + continuation)["input_ids"]
        if regime == "model_induced":
            rows = (t_ids, t_ids, t_ids, cont)
        else:
            unlocked = render(UNLOCKED, question)
            assert unlocked.endswith(moved)
            rows = (t_ids, tok(unlocked[: len(unlocked) - len(moved)])["input_ids"], t_ids, cont)
        assert value == pytest.approx(manual_loglikelihood(target, source, locked, rows, 0.8), abs=2e-3)


def test_prompt_induced_refuses_what_it_cannot_template(world):
    lm = make_lm(world)
    fewshot = "Question: hi\nAnswer: yo\n\n" + render(LOCKED, "what")
    for context in (fewshot, "<start_of_turn>user\n" + render(LOCKED, "what")):
        with pytest.raises(ConfigError, match="is not locked_template filled with its question"):
            lm.generate_until([Instance("generate_until", {"question": "what"}, (context, dict(GEN)), 0)])
    no_question = Instance("generate_until", {"text": "x"}, (render(LOCKED, "how far"), dict(GEN)), 0)
    assert lm._prompt_pair(no_question) == (render(UNLOCKED, "how far"), render(LOCKED, "how far"))  # recovered
    with pytest.raises(ConfigError, match="loglikelihood_rolling has no prompt"):
        lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("some text",), 0)])


def test_spec_errors_name_the_argument(world):
    with pytest.raises(ConfigError, match="capability: templates apply to the prompt-induced regime"):
        make_lm(world, source_locked=world["source_locked"], capability="cot")
    with pytest.raises(ConfigError, match="lam='x': expected a finite number"):
        make_lm(world, lam="x")
    with pytest.raises(ConfigError, match="the logit difference would be zero"):
        make_lm(world, locked_template="Q: {question}\n", unlocked_template="Q: {question}\n")
    with pytest.raises(ConfigError, match="gen_kwargs num_beams: not supported with --model logit_transfer"):
        make_lm(world).generate_until([Instance("generate_until", {"question": "a"}, (render(LOCKED, "a"),
                                       {**GEN, "num_beams": 2}), 0)])  # fmt: skip


def test_mismatched_vocabulary_is_one_line_in_the_cli(world, tmp_path, lm_eval_cli):
    """Refused through lm-eval's CLI as one ConfigError line (in this process; the hook that prints it as
    `lm_eval: error: ...` without a traceback is test_adapter.test_cli_argument_error_is_one_line's)."""
    other = tmp_path / "other_vocab"
    save_tiny(other, "llama", 2, 32, 5)
    tok_file = other / "tokenizer.json"
    data = json.loads(tok_file.read_text())
    vocab = data["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]
    tok_file.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        lm_eval_cli("--model", "logit_transfer", "--model_args",
                    f"target={world['target']},source={other},cache_dir={tmp_path}", "--tasks", "tiny_unlock_gen",
                    "--include_path", world["tasks"], "--device", "cpu")  # fmt: skip
    message = str(err.value)
    assert "\n" not in message and "token id 4 is 'a' in the target but 'b' in source" in message
    assert "logit arithmetic needs a shared vocabulary" in message


def test_cli_run_records_the_method_and_keeps_its_own_cache_table(world, tmp_path, lm_eval_cli):
    out = tmp_path / "out"
    model_args = f"target={world['target']},source={world['source']},source_locked={world['source_locked']},lam=0.5"
    lm_eval_cli("--model", "logit_transfer", "--model_args", f"{model_args},cache_dir={tmp_path}", "--tasks",
                "tiny_unlock_gen,tiny_unlock_mc", "--include_path", world["tasks"], "--device", "cpu", "--output_path",
                str(out), "--use_cache", str(tmp_path / "lmcache"))  # fmt: skip
    results = json.loads(next((out / "logit_transfer_source_to_target").glob("results_*.json")).read_text())
    record = results["config"]["unlock_eval"]
    assert record["method"] == "logit_transfer" and record["hyperparameters"]["regime"] == "model_induced"
    assert record["hyperparameters"]["lam"] == 0.5 and record["extra_forward_passes_per_token"] == 2
    assert record["details"]["source_forward_calls_per_token"] == 2
    assert {"tiny_unlock_gen", "tiny_unlock_mc"} <= set(results["results"])
    import sqlite3

    rows = {}
    for db in tmp_path.glob("lmcache*"):
        with sqlite3.connect(db) as conn:
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                rows[name] = conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
    ours = [name for name in rows if name.startswith("logit_transfer_")]
    assert len(ours) == 1 and rows[ours[0]] > 0 and rows.get("unnamed", 0) == 0  # nothing in the plain table


def test_vocabulary_prefix_is_accepted_and_anything_else_refused():
    from unlock_eval.methods.logit_transfer.mix import check_vocabularies

    small, grown, other = char_tokenizer(), char_tokenizer(), char_tokenizer()
    grown.add_tokens(["<extra0>", "<extra1>"])  # the source's vocabulary extends the target's
    labels = {"target": "t", "source": "s", "source_locked": "l"}
    check_vocabularies({"target": small, "source": grown, "source_locked": grown}, labels)
    with pytest.raises(ConfigError, match=r"the target has \d+ tokens, source \d+; logit arithmetic needs"):
        check_vocabularies({"target": grown, "source": small, "source_locked": small}, labels)
    other.add_tokens(["<x>"])
    with pytest.raises(ConfigError, match=r"token id \d+ is '<x>' in the target but '<extra0>' in source_locked"):
        check_vocabularies({"target": other, "source": other, "source_locked": grown}, labels)


def test_prefix_vocabulary_source_with_more_logit_rows_generates(world, tmp_path):
    """A source with extra ids (a bigger embedding and tokenizer): only the target's columns are mixed."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(world["source"])
    model.resize_token_embeddings(100, mean_resizing=False)
    tok = char_tokenizer()
    tok.add_tokens([f"<extra{i}>" for i in range(4)])
    model.save_pretrained(tmp_path / "bigger")
    tok.save_pretrained(tmp_path / "bigger")
    lm = make_lm(world, source=str(tmp_path / "bigger"), source_locked=world["source_locked"])
    assert lm.vocab == 96  # the columns all three emit
    assert len(lm.generate_until(generation_requests())) == len(QUESTIONS)


def test_loglikelihood_rolling_is_mixed_with_two_checkpoints(world):
    from transformers import AutoModelForCausalLM

    lm = make_lm(world, source_locked=world["source_locked"], lam=0.6)
    text = "count to four, slowly please"
    (got,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    load = lambda p: AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32).eval()  # noqa: E731
    target, source, locked = load(world["target"]), load(world["source"]), load(world["source_locked"])
    ids = [lm.prefix_token_id] + char_tokenizer()(text)["input_ids"]
    rows = (ids[:1], ids[:1], ids[:1], ids[1:])  # every token scored after the prefix token, as lm-eval does
    assert got == pytest.approx(manual_loglikelihood(target, source, locked, rows, 0.6), abs=2e-3)
