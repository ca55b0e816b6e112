"""`--model weight_transfer` (task arithmetic) on tiny models that share a tokenizer: exact formula, out-of-core
shards and chunks, refusals, lm-eval runs equal to a hand-merged `--model hf` run, cache reuse and listing."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from unlock_eval.errors import ConfigError
from unlock_eval.methods.weight_transfer.merge import merge_models

from adapter_fixtures import save_tiny, write_tasks
from tiny_models import VOCAB, char_tokenizer


def full_tokenizer():
    """The tiny models' character tokenizer padded with unused tokens to the models' 96 rows (like a real one)."""
    tok = char_tokenizer()
    tok.add_tokens([f"<unused{i}>" for i in range(VOCAB - len(tok))])
    assert len(tok) == VOCAB
    return tok


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    found = {
        "target": save_tiny(root / "target", "llama", 3, 32, 11),
        "source": save_tiny(root / "source", "llama", 3, 32, 12),
        "source_locked": save_tiny(root / "locked", "llama", 3, 32, 13),
        "other_width": save_tiny(root / "wide", "llama", 3, 48, 14),
        "tasks": write_tasks(root / "tasks"),
        "root": root,
    }
    for role in ("target", "source", "source_locked"):
        full_tokenizer().save_pretrained(found[role])
    return found


def state(path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()


def by_hand(trio, lam: float) -> dict[str, torch.Tensor]:
    t, s, b = (state(trio[role]) for role in ("target", "source", "source_locked"))
    return {name: t[name] + lam * (s[name] - b[name]) for name in t}


@pytest.mark.parametrize("arch", ["llama", "gemma3"])  # gemma3: tied embeddings, scalar-free norms
def test_merged_weights_equal_the_formula_exactly_across_chunks_and_shards(tmp_path, arch):
    dirs = {
        role: Path(save_tiny(tmp_path / role, arch, 2, 32, seed))
        for role, seed in (("target", 1), ("source", 2), ("source_locked", 3))
    }
    out = tmp_path / "merged"
    out.mkdir()
    # 1 KiB chunks: the 96-row embedding is read in 8-row pieces; 20 kB shards: several output files
    done = merge_models(dirs, 0.7, out, chunk_bytes=1024, shard_bytes=20_000)
    assert done["shards"] > 1 and (out / "model.safetensors.index.json").is_file()
    merged = state(out)
    t, s, b = (state(dirs[role]) for role in ("target", "source", "source_locked"))
    assert merged.keys() == t.keys()
    for name in t:
        assert torch.equal(merged[name], t[name] + 0.7 * (s[name] - b[name])), name
    assert (out / "tokenizer.json").is_file() and (out / "config.json").is_file()


def test_shape_mismatch_names_the_first_tensor_and_both_shapes(trio, tmp_path):
    dirs = {"target": trio["target"], "source": trio["other_width"], "source_locked": trio["source_locked"]}
    with pytest.raises(ConfigError) as err:
        merge_models({k: Path(v) for k, v in dirs.items()}, 1.0, tmp_path)
    message = str(err.value)
    assert "tensor lm_head.weight has shape [96, 32] in target" in message and "[96, 48] in source" in message
    assert "identical architectures" in message and "--model unlock" in message and "\n" not in message
    assert not list(tmp_path.iterdir())  # nothing written


def grown_vocab(path: Path, base: str, seed: int, token: str = "<pad2>") -> str:
    """A copy of `base` with one token added to the tokenizer and one row to the embeddings (32000 -> 32001)."""
    model = AutoModelForCausalLM.from_pretrained(base)
    tok = full_tokenizer()
    tok.add_tokens([token])
    torch.manual_seed(seed)
    model.resize_token_embeddings(model.config.vocab_size + 1, mean_resizing=False)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_vocab_row_difference_is_refused_unless_shared_prefix(trio, tmp_path):
    target = grown_vocab(tmp_path / "target97", trio["target"], 5)
    dirs = {"target": Path(target), "source": Path(trio["source"]), "source_locked": Path(trio["source_locked"])}
    with pytest.raises(ConfigError, match=r"\[97, 32\] in target .* \[96, 32\] in source .* vocab=shared_prefix"):
        merge_models(dirs, 1.0, tmp_path / "refused")
    out = tmp_path / "merged"
    out.mkdir()
    assert merge_models(dirs, 1.0, out, vocab="shared_prefix")["vocab_rows_transferred"] == 96
    merged, t = state(out), state(target)
    s, b = state(trio["source"]), state(trio["source_locked"])
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(merged[name][:96], t[name][:96] + (s[name] - b[name]))
        assert torch.equal(merged[name][96:], t[name][96:])  # the target's own added row, untouched
    # tokenizers that disagree on a shared id cannot share rows
    clash = tmp_path / "clash"
    grown_vocab(clash, trio["target"], 5)
    tok_file = clash / "tokenizer.json"
    tok_json = json.loads(tok_file.read_text())
    vocab = tok_json["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]
    tok_file.write_text(json.dumps(tok_json))
    with pytest.raises(ConfigError, match=r"vocab=shared_prefix: token id 4 is 'b' in target .* but 'a' in source"):
        merge_models({**dirs, "target": clash}, 1.0, tmp_path / "refused2", vocab="shared_prefix")


def samples_of(folder: Path) -> list[str]:
    lines = next(folder.rglob("samples_tiny_unlock_gen_*.jsonl")).read_text().splitlines()
    return [json.loads(line)["resps"][0][0] for line in lines]


def test_lm_eval_run_equals_hand_merged_hf_run_and_reuses_the_merge(trio, tmp_path, lm_eval_cli):
    from unlock_eval.cache_admin import list_entries, prune

    merged = tmp_path / "by_hand"
    model = AutoModelForCausalLM.from_pretrained(trio["target"])
    model.load_state_dict(by_hand(trio, 2.0))
    model.save_pretrained(merged)
    full_tokenizer().save_pretrained(merged)
    common = ["--tasks", "tiny_unlock_gen", "--include_path", trio["tasks"], "--log_samples", "--device", "cpu"]
    lm_eval_cli("--model", "hf", "--model_args", f"pretrained={merged}", "--output_path", str(tmp_path / "hf"), *common)
    cache = tmp_path / "cache"
    args = f"target={trio['target']},source={trio['source']},source_locked={trio['source_locked']},lam=2"
    out = tmp_path / "wt"
    lm_eval_cli("--model", "weight_transfer", "--model_args", f"{args},cache_dir={cache}", "--output_path", str(out),
                *common)  # fmt: skip
    folder = out / "weight_transfer_source_to_target"  # named from source/target like unlock's
    record = json.loads(next(folder.glob("results_*.json")).read_text())["config"]["unlock_eval"]
    assert record["method"] == "weight_transfer" and record["schema_version"] == 1
    assert record["hyperparameters"] == {"lam": 2.0, "vocab": "exact"}
    assert set(record["models"]) == {"target", "source", "source_locked"}
    assert record["models"]["source"]["identity"]["files"]  # content hashes, not just paths
    assert record["extra_forward_passes_per_token"] == 0 and record["setup_peak_rss_mb"] > 0
    assert record["details"]["merge_reused"] is False
    assert samples_of(folder) == samples_of(tmp_path / "hf")
    entries = list_entries(cache)
    merged_entries = [e for e in entries if e.kind == "merged"]
    assert len(merged_entries) == 1 and merged_entries[0].size_bytes > 100_000
    assert "source" in merged_entries[0].description and "2" in merged_entries[0].description
    prune(cache, kinds=["merged"])
    assert not [e for e in list_entries(cache) if e.kind == "merged"]


def test_cli_refusal_is_one_line_without_traceback(trio, tmp_path, lm_eval_cli):
    """Refused through lm-eval's CLI as one ConfigError line (in this process; the hook that prints it as
    `lm_eval: error: ...` without a traceback is test_adapter.test_cli_argument_error_is_one_line's)."""
    args = f"target={trio['target']},source={trio['other_width']},source_locked={trio['source_locked']}"
    with pytest.raises(ConfigError) as err:
        lm_eval_cli("--model", "weight_transfer", "--model_args", f"{args},cache_dir={tmp_path}", "--tasks",
                    "tiny_unlock_gen", "--include_path", trio["tasks"], "--device", "cpu")  # fmt: skip
    assert "\n" not in str(err.value) and "weight_transfer: tensor lm_head.weight has shape [96, 32]" in str(err.value)
    assert not (tmp_path / "merged").exists() or not any((tmp_path / "merged").glob("*/"))


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"lam": "inf"}, "lam='inf': expected a finite number"),
        ({"lam": "big"}, "lam='big': expected a finite number"),
        ({"vocab": "crop"}, "vocab='crop': allowed values are exact, shared_prefix"),
        ({"source_locked": None}, "missing source_locked="),
        ({"lamda": 1}, "unknown model_args for --model weight_transfer: lamda"),
        ({"source_locked": "SOURCE"}, "source_locked is the same model as source"),
    ],
)
def test_argument_errors_name_the_key(trio, tmp_path, extra, message):
    from unlock_eval.model_adapters.weight_transfer import WeightTransferLM

    args = {role: trio[role] for role in ("target", "source", "source_locked")}
    args.update(cache_dir=str(tmp_path), device="cpu")
    args.update(extra)
    if args.get("source_locked") == "SOURCE":
        args["source_locked"] = trio["source"]
    args = {k: v for k, v in args.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        WeightTransferLM(**args)


def test_lm_holds_the_merge_and_use_cache_table_is_per_configuration(trio, tmp_path):
    from lm_eval.api.model import CachingLM

    from unlock_eval.model_adapters.weight_transfer import WeightTransferLM

    args = {role: trio[role] for role in ("target", "source", "source_locked")}
    db = str(tmp_path / "lm_cache.db")
    lm = WeightTransferLM(**args, cache_dir=str(tmp_path), device="cpu")
    expected = by_hand(trio, 1.0)
    assert all(torch.equal(lm.model.state_dict()[name], expected[name]) for name in expected)  # HFLM got the merge
    assert lm.run_record.details["merge_reused"] is False
    again = WeightTransferLM(**args, cache_dir=str(tmp_path), device="cpu")
    assert again.run_record.details["merge_reused"] is True  # the same three models and lam: the cached merge
    one = CachingLM(lm, db)
    two = CachingLM(WeightTransferLM(**args, lam=0.5, cache_dir=str(tmp_path), device="cpu"), db)
    assert one.dbdict.tablename.startswith("weight_transfer_") and one.dbdict.tablename != two.dbdict.tablename
    assert "unnamed" not in (one.dbdict.tablename, two.dbdict.tablename)  # lm-eval's plain table


def _merged(trio, cache):
    from unlock_eval.methods.weight_transfer.merge import merged_model

    dirs = {role: Path(trio[role]) for role in ("target", "source", "source_locked")}
    return merged_model(dirs, {r: str(p) for r, p in dirs.items()}, 0.5, {r: r for r in dirs}, cache_dir=cache)


def test_a_broken_merged_model_is_merged_again_with_one_warning(trio, tmp_path, caplog):
    folder, reused = _merged(trio, tmp_path)
    assert not reused and _merged(trio, tmp_path) == (folder, True)
    weights = next(folder.glob("*.safetensors"))
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # truncated: a full disk, a killed copy
    with caplog.at_level("WARNING"):
        again, reused = _merged(trio, tmp_path)
    assert (again, reused) == (folder, False) and weights.read_bytes() == good
    assert [r.getMessage() for r in caplog.records if "is broken" in r.getMessage()] == [
        f"unlock-eval: the merged model {folder} is broken ({weights.name} has {len(good) // 2} bytes, {len(good)} "
        "were written); merging it again"
    ]


def test_a_cold_merge_on_a_read_only_cache_is_one_line(trio, tmp_path):
    from test_cache_edges import assert_read_only, read_only

    (tmp_path / "merged").mkdir()
    with read_only(tmp_path):
        assert_read_only(tmp_path)
        with pytest.raises(ConfigError, match=r"the cache .* is not writable .* and lacks the merged model target \+ "
                           r"0.5 x \(source - source_locked\): point cache_dir="):  # fmt: skip
            _merged(trio, tmp_path)
