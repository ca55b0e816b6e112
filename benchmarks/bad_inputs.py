"""A bad-input round over every command: each outcome clear (one error line), traceback, silent (exit 0) or other."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
UE, LM = str(BIN / "unlock-eval"), str(BIN / "lm_eval")
D = "@D@"  # the case's own scratch folder, substituted into argv and env
CLEAR = re.compile(r"^(unlock-eval|lm[-_]eval)( [\w-]+)*: error: \S")
EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt))\b")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Case:
    name: str
    command: str  # the command the tally groups by
    argv: list[str]
    names: tuple[str, ...] = ()  # the clear line should name one of these (argument or path)
    prep: object = None  # callable(case_dir) run before the command
    check: object = None  # callable(case_dir) -> a note (what the command left behind), or None
    env: dict = field(default_factory=dict)
    timeout: int = 120


# ------------------------------------------------------------------------------------------- the scratch world


def build_world(root: Path, env: dict) -> dict:
    """Tiny saved models (tests/adapter_fixtures.save_tiny), data files, one good run and one good sweep."""
    sys.path.insert(0, str(REPO / "tests"))
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from adapter_fixtures import save_tiny, write_questions, write_tasks
    from tiny_models import CHARS, tiny_model

    w = {"root": root}
    w["src"] = save_tiny(root / "src", "llama", 4, 32, 1)
    w["tgt"] = save_tiny(root / "tgt", "gpt2", 3, 48, 2)
    w["wt_target"] = save_tiny(root / "wt_target", "llama", 3, 32, 11)
    w["wt_source"] = save_tiny(root / "wt_source", "llama", 3, 32, 12)
    w["wt_locked"] = save_tiny(root / "wt_locked", "llama", 3, 32, 13)
    w["wt_wide"] = save_tiny(root / "wt_wide", "llama", 3, 48, 14)
    w["wt_gpt2"] = save_tiny(root / "wt_gpt2", "gpt2", 3, 32, 15)
    other = tiny_model("gpt2", layers=2, d=32, seed=5)  # the same vocabulary size, other token ids
    vocab = {c: i for i, c in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", *CHARS[::-1]])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    specials = {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>"}
    other.save_pretrained(root / "other_tokens")
    PreTrainedTokenizerFast(tokenizer_object=tk, **specials).save_pretrained(root / "other_tokens")
    w["other_tokens"] = str(root / "other_tokens")
    w["q"] = write_questions(root / "q.jsonl")
    w["tasks"] = write_tasks(root / "tasks")
    (root / "q.txt").write_text(Path(w["q"]).read_text())
    w["q_txt"] = str(root / "q.txt")
    (root / "q_noq.jsonl").write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(10)))
    w["q_noq"] = str(root / "q_noq.jsonl")
    (root / "q_empty.jsonl").write_text("")
    w["q_empty"] = str(root / "q_empty.jsonl")
    (root / "a_file.txt").write_text("not a folder\n")
    w["a_file"] = str(root / "a_file.txt")

    w["run_cache"] = str(root / "run_cache")
    args = f"source={w['src']},target={w['tgt']},extract_from={w['q']},n=8,k=4,cache_dir={w['run_cache']}"
    setup(
        [UE, "run", "--model", "unlock", "--model_args", args, "--tasks", "arith_unlock", "--limit", "1",
         "--gen_kwargs", "max_gen_toks=2", "--device", "cpu", "--output_path", str(root / "run_ok"), "--log_samples"],
        env,
    )  # fmt: skip
    w["run_ok"] = str(root / "run_ok")
    w["results_json"] = str(next((root / "run_ok").rglob("results_*.json")))
    w["samples_jsonl"] = str(next((root / "run_ok").rglob("samples_*.jsonl")))

    w["pack"] = str(root / "pack.safetensors")  # the good run's capability pack
    setup([UE, "pack", "--from", w["run_ok"], "--output", w["pack"], "--cache-dir", w["run_cache"]], env)

    w["sweep_args"] = f"source={w['src']},target={w['tgt']},extract_from={w['q']},n=8,cache_dir={root / 'sweep_cache'}"
    setup([UE, "sweep", *sweep_tail(w["sweep_args"], str(root / "sweep_ok"), alphas="0.1,0.5")], env)
    w["sweep_ok"] = str(root / "sweep_ok")
    return w


def setup(argv: list[str], env: dict) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode:
        sys.exit(f"bad_inputs: set-up command failed ({done.returncode}): {' '.join(argv)}\n{done.stderr[-3000:]}")


def sweep_tail(model_args: str, out: str, alphas: str = "0.1", ks: str = "2", limit: str = "1", gen: str = "2"):
    return ["--model_args", model_args, "--tasks", "arith_unlock", "--alphas", alphas, "--ks", ks, "--limit", limit,
            "--gen_kwargs", f"max_gen_toks={gen}", "--device", "cpu", "--no-baseline",
            "--output_path", out]  # fmt: skip


# ------------------------------------------------------------------------------------------- file tools


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])


def copy_run(w: dict, d: Path, keep: str = "all") -> Path:
    """A copy of the good run under d/run; keep='results' drops the samples."""
    shutil.copytree(w["run_ok"], d / "run")
    if keep == "results":
        for f in (d / "run").rglob("samples_*.jsonl"):
            f.unlink()
    return d / "run"


def exists_note(rel: str, what: str):
    def check(d: Path):
        return f"{what} ({rel}) written" if (d / rel).exists() else None

    return check


# ------------------------------------------------------------------------------------------- the cases


def model_args(base: dict, drop: tuple[str, ...] = (), **over) -> str:
    merged = {k: v for k, v in {**base, **over}.items() if k not in drop}
    return ",".join(f"{k}={v}" for k, v in merged.items())


def cases(w: dict) -> list[Case]:
    ua_base = {
        "source": w["src"],
        "target": w["tgt"],
        "extract_from": w["q"],
        "n": 8,
        "k": 4,
        "cache_dir": f"{D}/cache",
    }
    wa_base = {
        "target": w["wt_target"],
        "source": w["wt_source"],
        "source_locked": w["wt_locked"],
        "cache_dir": f"{D}/cache",
    }
    la_base = {"target": w["tgt"], "source": w["src"], "cache_dir": f"{D}/cache"}
    tail = ["--tasks", "arith_unlock", "--limit", "1", "--gen_kwargs", "max_gen_toks=2", "--device", "cpu",
            "--output_path", f"{D}/out"]  # fmt: skip
    c: list[Case] = []

    def add(name, command, argv, names=(), **kw):
        c.append(Case(name, command, list(argv), tuple(names), **kw))

    # --- unlock-eval itself
    add("unknown subcommand", "unlock-eval", [UE, "evaluate"], ["evaluate"])
    add("misspelled subcommand", "unlock-eval", [UE, "reprot", w["run_ok"]], ["reprot"])
    add("unknown top-level flag", "unlock-eval", [UE, "--verbose"], ["--verbose"])
    add("no subcommand", "unlock-eval", [UE], ["COMMAND", "command"])
    add("--version (not defined)", "unlock-eval", [UE, "--version"], ["--version"])

    # --- unlock-eval run --model unlock (lm-eval's flags and our model_args)
    def run_ue(name, names, args=None, flags=None, **kw):
        argv = [UE, "run", "--model", "unlock", "--model_args", args or model_args(ua_base), *(flags or tail)]
        add(name, "run", argv, names, **kw)

    run_ue("no --tasks", ["--tasks"], flags=["--limit", "1", "--device", "cpu"])
    run_ue("unknown task (typo)", ["arith_unlok"], flags=[*tail[:1], "arith_unlok", *tail[2:]])
    run_ue("no target", ["target"], model_args(ua_base, drop=("target",)))
    add("no --model_args", "run", [UE, "run", "--model", "unlock", *tail], ["target", "model_args"])
    run_ue("unknown model_arg alhpa", ["alhpa"], model_args(ua_base, alhpa=0.2))
    run_ue("alpha=inf", ["alpha"], model_args(ua_base, alpha="inf"))
    run_ue("alpha=high (not a number)", ["alpha"], model_args(ua_base, alpha="high"))
    run_ue("k=0", ["k"], model_args(ua_base, k=0))
    run_ue("n=100 > 10 extraction rows", ["n", "q.jsonl"], model_args(ua_base, n=100))
    run_ue("k=16 > n=8", ["k"], model_args(ua_base, k=16))
    run_ue("layers=0-9 (target has 3)", ["layers"], model_args(ua_base, layers="0-9"))
    run_ue("layers=middle", ["layers"], model_args(ua_base, layers="middle"))
    run_ue("mode typo prefil_last", ["mode"], model_args(ua_base, mode="prefil_last"))
    run_ue("dtype typo bfloat", ["dtype", "bfloat"], model_args(ua_base, dtype="bfloat"))
    run_ue("protocol typo refrence", ["protocol"], model_args(ua_base, protocol="refrence"))
    run_ue("backend typo vlm", ["backend"], model_args(ua_base, backend="vlm"))
    run_ue("max_new_tokens=0", ["max_new_tokens"], model_args(ua_base, max_new_tokens=0))
    run_ue(
        "extract_from missing file", ["extract_from", "nope.jsonl"], model_args(ua_base, extract_from=f"{D}/nope.jsonl")
    )
    run_ue("extract_from .txt suffix", ["extract_from", "q.txt"], model_args(ua_base, extract_from=w["q_txt"]))
    run_ue(
        "extract_from jsonl without question", ["extract_from", "q_noq"], model_args(ua_base, extract_from=w["q_noq"])
    )
    run_ue("extract_from empty jsonl", ["extract_from", "q_empty"], model_args(ua_base, extract_from=w["q_empty"]))
    run_ue("cache_dir is a file", ["cache_dir", "a_file"], model_args(ua_base, cache_dir=w["a_file"]))
    run_ue("target path missing", ["target", "no_model"], model_args(ua_base, target=f"{D}/no_model"))
    run_ue("source hub id typo (offline)", ["source", "SmolLM2"],
           model_args(ua_base, source="HuggingFaceTB/SmolLM2-135M-Instruc"))  # fmt: skip
    run_ue("misspelled lm-eval flag --limt", ["--limt"], flags=[*tail, "--limt", "1"])
    run_ue("--output_path is a file", ["output_path", "a_file"], flags=[*tail[:-1], w["a_file"]])
    run_ue("--include_path missing", ["include_path", "nope"],
           flags=["--tasks", "tiny_unlock_gen", "--include_path", f"{D}/nope", *tail[2:]])  # fmt: skip
    run_ue("--gen_kwargs max_gen_toks=abc", ["max_gen_toks", "gen_kwargs"],
           flags=[*tail[:4], "--gen_kwargs", "max_gen_toks=abc", *tail[6:]])  # fmt: skip
    run_ue("--limit -1", ["limit"], flags=[*tail[:2], "--limit", "-1", *tail[4:]])
    add("--model typo unlok", "run", [UE, "run", "--model", "unlok", "--model_args", model_args(ua_base), *tail],
        ["unlok", "model"])  # fmt: skip

    # --- lm_eval --model unlock
    def lm_unlock(name, names, args=None, flags=None, **kw):
        add(name, "lm_eval unlock", [LM, "--model", "unlock", "--model_args", args or model_args(ua_base),
                                     *(flags or tail)], names, **kw)  # fmt: skip

    lm_unlock("key_dtype typo fp17", ["key_dtype"], model_args(ua_base, key_dtype="fp17"))
    lm_unlock("pca_sign typo negative", ["pca_sign"], model_args(ua_base, aggregator="pca", pca_sign="negative"))
    lm_unlock("aggregator typo median", ["aggregator"], model_args(ua_base, aggregator="median"))
    lm_unlock("capability typo cott", ["capability"], model_args(ua_base, capability="cott"))
    lm_unlock("locked_template without {question}", ["locked_template", "{question}"],
              model_args(ua_base, locked_template="Just answer."))  # fmt: skip
    lm_unlock("layer_map 2 entries for 3 layers", ["layer_map"], model_args(ua_base, layer_map="0;1"))
    lm_unlock("layer_map source layer 9 of 4", ["layer_map"], model_args(ua_base, layer_map="0;1;9"))
    lm_unlock("stop_strings typo never", ["stop_strings"], model_args(ua_base, stop_strings="never"))
    lm_unlock("arithmetic typo float16", ["arithmetic"], model_args(ua_base, arithmetic="float16"))
    lm_unlock("extract_batch_size=0", ["extract_batch_size"], model_args(ua_base, extract_batch_size=0))
    lm_unlock("shared_template typo both", ["shared_template"],
              model_args(ua_base, source_locked=w["wt_locked"], shared_template="both"))  # fmt: skip
    lm_unlock("layers_path wrong", ["layers_path"], model_args(ua_base, layers_path="model.nothing"))
    lm_unlock("share_alphas 0.1;x", ["share_alphas"], model_args(ua_base, share_alphas="0.1;x"))
    lm_unlock("alpha=nan", ["alpha"], model_args(ua_base, alpha="nan"))
    lm_unlock("n=0", ["n"], model_args(ua_base, n=0))
    lm_unlock("target is a file", ["target", "a_file"], model_args(ua_base, target=w["a_file"]))
    lm_unlock("UNLOCK_EVAL_CACHE_DIR is a file", ["UNLOCK_EVAL_CACHE_DIR", "a_file"],
              model_args(ua_base, drop=("cache_dir",)), env={"UNLOCK_EVAL_CACHE_DIR": w["a_file"]})  # fmt: skip
    lm_unlock("unknown task (lm-eval's check)", ["arith_unlok"], flags=["--tasks", "arith_unlok", *tail[2:]])
    lm_unlock("no --tasks (lm-eval's check)", ["--tasks", "tasks"], flags=["--limit", "1", "--device", "cpu"])
    lm_unlock("misspelled model_arg extract_form", ["extract_form"],
              model_args(ua_base, drop=("extract_from",), extract_form=w["q"]))  # fmt: skip
    lm_unlock("source_locked path missing", ["source_locked", "none"], model_args(ua_base, source_locked=f"{D}/none"))
    lm_unlock("source_locked of another architecture", ["source_locked", "architecture", "gpt2", "llama"],
              model_args(ua_base, source_locked=w["wt_gpt2"]))  # fmt: skip

    # --- lm_eval --model unlock with a capability pack (key=)
    pk_base = {"target": w["tgt"], "key": w["pack"], "cache_dir": f"{D}/cache"}
    lm_unlock("key= missing file", ["key", "missing"], model_args(pk_base, key=f"{D}/missing.safetensors"))
    lm_unlock("key= a pickle name", ["key", ".pt"], model_args(pk_base, key=f"{D}/key.pt"))
    lm_unlock("key= a results json", ["key", ".json"], model_args(pk_base, key=w["results_json"]))
    lm_unlock("key= truncated pack", ["key", "pack"], model_args(pk_base, key=f"{D}/pack.safetensors"),
              prep=lambda d: (shutil.copy(w["pack"], d / "pack.safetensors"),
                              truncate(d / "pack.safetensors")))  # fmt: skip
    lm_unlock("key= with source=", ["source", "key"], model_args(pk_base, source=w["src"]))
    lm_unlock("key= with n=", ["n", "key"], model_args(pk_base, n=8))
    lm_unlock("key= for another target", ["key", "target", "src"], model_args(pk_base, target=w["src"]))
    lm_unlock("key= shape check, another shape", ["key", "layers", "src"],
              model_args(pk_base, target=w["src"], key_target_check="shape"))  # fmt: skip
    lm_unlock("key_target_check typo size", ["key_target_check"], model_args(pk_base, key_target_check="size"))
    lm_unlock("key_weights 1 for 2 packs", ["key_weights"], model_args(pk_base, key=f"{w['pack']};{w['pack']}",
              key_weights="1"))  # fmt: skip
    lm_unlock("key_weights 0.5;x", ["key_weights"], model_args(pk_base, key_weights="0.5;x"))
    lm_unlock("alpha_profile 2 factors for 3 layers", ["alpha_profile"], model_args(pk_base, alpha_profile="1;1"))
    lm_unlock("alpha_profile typo mid", ["alpha_profile"], model_args(pk_base, alpha_profile="mid"))
    lm_unlock("arithmetic=model with two packs", ["arithmetic", "key"],
              model_args(pk_base, key=f"{w['pack']};{w['pack']}", arithmetic="model"))  # fmt: skip

    # --- unlock-eval pack
    def pack(name, names, argv, **kw):
        add(name, "pack", [UE, "pack", *argv], names, **kw)

    out = ["--output", f"{D}/p.safetensors"]
    pack("nothing to pack from", ["--model_args", "--from"], out)
    pack("no --output", ["--output"], ["--from", w["pack"]])
    pack("--model_args and --from", ["--model_args", "--from"], ["--model_args", model_args(ua_base), "--from",
         w["run_ok"], *out], check=exists_note("p.safetensors", "a pack"))  # fmt: skip
    pack("--from missing folder", ["--from", "missing"], ["--from", f"{D}/missing", *out])
    pack("--from a folder without results", ["--from", "tasks"], ["--from", w["tasks"], *out])
    pack("--from a pickle name", ["--from", ".pt"], ["--from", f"{D}/key.pt", *out])
    pack("--output into a missing folder", ["--output", "missing"], ["--from", w["pack"], "--output",
         f"{D}/missing/p.safetensors"])  # fmt: skip
    pack("--output .gguf without --format gguf", ["--output", "--format"], ["--from", w["pack"], "--output",
         f"{D}/p.gguf"])  # fmt: skip
    pack("--format gguf to a .safetensors", ["--output", ".gguf"], ["--from", w["pack"], "--format", "gguf", *out])
    pack("--alpha without --format gguf", ["--alpha"], ["--from", w["pack"], "--alpha", "0.3", *out])
    pack("--alpha nan", ["--alpha"], ["--from", w["pack"], "--format", "gguf", "--alpha", "nan", "--output",
         f"{D}/p.gguf"], check=exists_note("p.gguf", "a control vector"))  # fmt: skip
    pack("--format typo ggml", ["--format", "ggml"], ["--from", w["pack"], "--format", "ggml", *out])
    pack("--model_args k=0", ["k"], ["--model_args", model_args(ua_base, k=0), *out])
    pack("--model_args with key=", ["key"], ["--model_args", model_args(pk_base), *out])
    pack("--model_args unknown alhpa", ["alhpa"], ["--model_args", model_args(ua_base, alhpa=1), *out])
    pack("inspect without a path", ["inspect", "pack"], ["inspect"])
    pack("inspect two paths", ["inspect", "pack"], ["inspect", w["pack"], w["pack"]])
    pack("inspect a missing file", ["missing"], ["inspect", f"{D}/missing.safetensors"])
    pack("inspect a results json", [".json", "results"], ["inspect", w["results_json"]])
    pack("inspect with --output", ["--output"], ["inspect", w["pack"], *out])
    pack("compare one pack", ["compare", "pack"], ["compare", w["pack"]])
    pack("unknown action unpack", ["unpack"], ["unpack", w["pack"]])

    # --- lm_eval --model weight_transfer
    def lm_wt(name, names, args, **kw):
        add(
            name,
            "lm_eval weight_transfer",
            [LM, "--model", "weight_transfer", "--model_args", args, *tail],
            names,
            **kw,
        )

    lm_wt("target of another architecture (gpt2 vs llama)", ["architecture", "gpt2", "llama", "target"],
          model_args(wa_base, target=w["wt_gpt2"]))  # fmt: skip
    lm_wt("target of another width (48 vs 32)", ["48", "32", "shape", "width", "hidden"],
          model_args(wa_base, target=w["wt_wide"]))  # fmt: skip
    lm_wt("source_locked of another architecture", ["architecture", "source_locked"],
          model_args(wa_base, source_locked=w["wt_gpt2"]))  # fmt: skip
    lm_wt("no source_locked", ["source_locked"], model_args(wa_base, drop=("source_locked",)))
    lm_wt("no source", ["source"], model_args(wa_base, drop=("source",)))
    lm_wt("no target", ["target"], model_args(wa_base, drop=("target",)))
    lm_wt("lam=inf", ["lam"], model_args(wa_base, lam="inf"))
    lm_wt("vocab typo shared", ["vocab"], model_args(wa_base, vocab="shared"))
    lm_wt("unlock's alpha on weight_transfer", ["alpha"], model_args(wa_base, alpha=0.1))
    lm_wt("source path missing", ["source", "none"], model_args(wa_base, source=f"{D}/none"))
    lm_wt("cache_dir is a file", ["cache_dir", "a_file"], model_args(wa_base, cache_dir=w["a_file"]))

    # --- lm_eval --model logit_transfer
    def lm_lt(name, names, args, **kw):
        add(name, "lm_eval logit_transfer", [LM, "--model", "logit_transfer", "--model_args", args, *tail], names, **kw)

    lm_lt("lam=nan", ["lam"], model_args(la_base, lam="nan"))
    lm_lt("unlock's k on logit_transfer", ["k"], model_args(la_base, k=4))
    lm_lt("capability typo cott", ["capability"], model_args(la_base, capability="cott"))
    lm_lt("unlocked_template without {question}", ["unlocked_template", "{question}"],
          model_args(la_base, locked_template="Q: {question}", unlocked_template="Think step by step."))  # fmt: skip
    lm_lt("no target", ["target"], model_args(la_base, drop=("target",)))
    lm_lt("source path missing", ["source", "none"], model_args(la_base, source=f"{D}/none"))
    lm_lt("source with another tokenizer (same size)", ["vocab", "other_tokens"],
          model_args(la_base, source=w["other_tokens"]))  # fmt: skip

    # --- unlock-eval report
    run_ok = w["run_ok"]
    add("results folder missing", "report", [UE, "report", f"{D}/nope"], ["nope"])
    add("a data file as results", "report", [UE, "report", w["q"]], ["q.jsonl"])
    add("empty results folder", "report", [UE, "report", f"{D}/empty"], ["empty"], prep=lambda d: (d / "empty").mkdir())
    add("truncated results json", "report", [UE, "report", f"{D}/run"], ["results_"],
        prep=lambda d: truncate(next(copy_run(w, d).rglob("results_*.json"))))  # fmt: skip
    add("truncated samples jsonl", "report", [UE, "report", f"{D}/run"], ["samples_"],
        prep=lambda d: truncate(next(copy_run(w, d).rglob("samples_*.jsonl")), 0.7))  # fmt: skip
    add("results json not lm-eval's", "report", [UE, "report", f"{D}/odd"], ["results_", "odd"],
        prep=lambda d: ((d / "odd").mkdir(), (d / "odd" / "results_x.json").write_text('{"foo": 1}')))  # fmt: skip
    add("--out into a missing folder", "report", [UE, "report", run_ok, "--out", f"{D}/missing/r.html"], ["--out"])
    add("--out is a folder", "report", [UE, "report", run_ok, "--out", D], ["--out"])
    add("--format md --out r.html", "report", [UE, "report", run_ok, "--format", "md", "--out", f"{D}/r.html"],
        ["--format", "--out"], check=exists_note("r.html", "markdown in .html"))  # fmt: skip
    add("--plots is a file", "report", [UE, "report", run_ok, "--plots", w["a_file"]], ["--plots"])
    add("--format typo pdf", "report", [UE, "report", run_ok, "--format", "pdf"], ["--format"])
    add("--baseline names no row", "report", [UE, "report", run_ok, "--baseline", "nosuchrow"], ["--baseline"])
    add("no results given", "report", [UE, "report"], ["results"])
    add("--out r.pdf (no such format)", "report", [UE, "report", run_ok, "--out", f"{D}/r.pdf"], ["--out", "pdf"],
        check=exists_note("r.pdf", "a report"))  # fmt: skip

    # --- unlock-eval behaviour
    add("results folder missing", "behaviour", [UE, "behaviour", f"{D}/nope"], ["nope"])
    add("run without --log_samples", "behaviour", [UE, "behaviour", f"{D}/run"], ["samples", "log_samples"],
        prep=lambda d: copy_run(w, d, keep="results"))  # fmt: skip
    add("truncated samples jsonl", "behaviour", [UE, "behaviour", f"{D}/run"], ["samples_"],
        prep=lambda d: truncate(next(copy_run(w, d).rglob("samples_*.jsonl")), 0.7))  # fmt: skip
    add("truncated results json", "behaviour", [UE, "behaviour", f"{D}/run"], ["results_"],
        prep=lambda d: truncate(next(copy_run(w, d).rglob("results_*.json"))))  # fmt: skip
    add("empty results folder", "behaviour", [UE, "behaviour", f"{D}/empty"], ["empty"],
        prep=lambda d: (d / "empty").mkdir())  # fmt: skip
    add("a data file as results", "behaviour", [UE, "behaviour", w["q"]], ["q.jsonl"])
    add("no results given", "behaviour", [UE, "behaviour"], ["results"])
    add("unknown flag --out", "behaviour", [UE, "behaviour", run_ok, "--out", f"{D}/b.md"], ["--out"])

    # --- unlock-eval sweep (a fresh folder each; the refused ones must leave no sweep.json)
    sa = w["sweep_args"]
    sbase = dict(x.split("=", 1) for x in sa.split(","))
    no_record = exists_note("out/sweep.json", "sweep.json")

    def sweep(name, names, argv, **kw):
        kw.setdefault("check", no_record)
        add(name, "sweep", [UE, "sweep", *argv], names, **kw)

    fresh = sweep_tail(sa, f"{D}/out")
    sweep("no --model_args", ["--model_args"], fresh[2:])
    sweep("no --tasks", ["--tasks"], [*fresh[:2], *fresh[4:]])
    sweep("--alpha (typo of --alphas)", ["--alpha"], [*fresh, "--alpha", "0.3"])
    sweep("--alphas 0.1,abc", ["--alphas"], sweep_tail(sa, f"{D}/out", alphas="0.1,abc"))
    sweep("--alphas inf", ["--alphas", "alpha"], sweep_tail(sa, f"{D}/out", alphas="inf"))
    sweep("--ks 0", ["--ks", "k"], sweep_tail(sa, f"{D}/out", ks="0"))
    sweep("--ns 100 > 10 extraction rows", ["--ns", "n", "q.jsonl"],
          [*sweep_tail(model_args(sbase, drop=("n",)), f"{D}/out"), "--ns", "8,100"])  # fmt: skip
    sweep(
        "--select-on dev with --include_path",
        ["--select-on", "--include_path"],
        [*fresh[:2], "--tasks", "tiny_unlock_gen", *fresh[4:], "--select-on", "dev", "--include_path", w["tasks"]],
    )
    sweep("--select-on typo test", ["--select-on"], [*fresh, "--select-on", "test"])
    sweep("--dev-size 0", ["--dev-size"], [*fresh, "--select-on", "dev", "--dev-size", "0"])
    sweep("--limit 0", ["--limit"], sweep_tail(sa, f"{D}/out", limit="0"))
    sweep("--output_path is a file", ["--output_path", "a_file"], sweep_tail(sa, w["a_file"]), check=None)
    sweep("unknown task", ["arith_unlok"], [*fresh[:2], "--tasks", "arith_unlok", *fresh[4:]])
    sweep("unknown model_arg alhpa", ["alhpa"], sweep_tail(f"{sa},alhpa=0.2", f"{D}/out"))
    sweep("--model hf", ["--model"], ["--model", "hf", *fresh])
    sweep("misspelled lm-eval flag --gen_kwarg", ["--gen_kwarg"], [*fresh, "--gen_kwarg", "temperature=0"])
    resume = {"prep": lambda d: shutil.copytree(w["sweep_ok"], d / "out"), "check": None}
    sweep("resume with --limit 2", ["--limit", "limit"], sweep_tail(sa, f"{D}/out", alphas="0.1,0.5", limit="2"),
          **resume)  # fmt: skip
    sweep("resume with other max_gen_toks", ["gen_kwargs", "max_gen_toks"],
          sweep_tail(sa, f"{D}/out", alphas="0.1,0.5", gen="3"), **resume)  # fmt: skip
    sweep("resume with other extract_from", ["extract_from"],
          sweep_tail(model_args(sbase, extract_from="arith"), f"{D}/out", alphas="0.1,0.5"), **resume)  # fmt: skip
    sweep("resume with --seed added", ["--seed"], [*sweep_tail(sa, f"{D}/out", alphas="0.1,0.5"), "--seed", "7"],
          **resume)  # fmt: skip
    sweep("resume with --ks 2,4 (a grown grid)", ["--ks"], sweep_tail(sa, f"{D}/out", alphas="0.1,0.5", ks="2,4"),
          **resume)  # fmt: skip
    sweep(
        "truncated sweep.json",
        ["sweep.json"],
        sweep_tail(sa, f"{D}/out", alphas="0.1,0.5"),
        prep=lambda d: (shutil.copytree(w["sweep_ok"], d / "out"), truncate(d / "out" / "sweep.json")),
        check=None,
    )

    # --- unlock-eval demo (tiny models and tiny settings, so an accepted bad input costs seconds, not minutes)
    demo_flags = {"--source": w["src"], "--target": w["tgt"], "--limit": "1", "--dev-size": "1", "--n": "8",
                  "--k": "4", "--alphas": "0.1", "--max-gen-toks": "2", "--batch-size": "1", "--device": "cpu",
                  "--output": f"{D}/out", "--cache-dir": f"{D}/cache"}  # fmt: skip

    def demo(name, names, flag, value):
        flags = {**demo_flags, flag: value}
        add(name, "demo", [UE, "demo", *[x for kv in flags.items() for x in kv]], names, timeout=240)

    demo("--output is a file", ["--output", "a_file"], "--output", w["a_file"])
    demo("--limit 0", ["--limit"], "--limit", "0")
    demo("--backend typo vlm", ["--backend"], "--backend", "vlm")
    demo("--task typo", ["--task"], "--task", "arith_unlok")
    demo("--alphas 0.1,x", ["--alphas"], "--alphas", "0.1,x")
    demo("--k 16 > --n 8", ["k", "n"], "--k", "16")
    demo("--lam inf", ["--lam", "lam"], "--lam", "inf")
    demo("--source path missing", ["--source", "none"], "--source", f"{D}/none")
    demo("--source equals --target", ["--source", "--target"], "--source", w["tgt"])
    demo("--cache-dir is a file", ["--cache-dir", "a_file"], "--cache-dir", w["a_file"])
    demo("--use_cache in a missing folder", ["--use_cache", "missing"], "--use_cache", f"{D}/missing/db")
    demo("--max-gen-toks 0", ["--max-gen-toks"], "--max-gen-toks", "0")

    # --- unlock-eval diagnose
    dg_flags = {"--source": w["src"], "--target": w["tgt"], "--n": "8", "--k": "4", "--extract-from": w["q"],
                "--cache-dir": f"{D}/cache"}  # fmt: skip

    def diagnose(name, names, drop=(), extra=(), **over):
        flags = {**dg_flags, **{f"--{k.replace('_', '-')}": v for k, v in over.items()}}
        argv = [x for kv in flags.items() if kv[0] not in drop for x in kv]
        add(name, "diagnose", [UE, "diagnose", *argv, *extra], names)

    diagnose("no --target", ["--target"], drop=("--target",))
    diagnose("--k 0", ["--k", "k"], k="0")
    diagnose("--n 100 > 10 extraction rows", ["--n", "n", "q.jsonl"], n="100")
    diagnose("--k 16 > --n 8", ["--k", "k"], k="16")
    diagnose("--folds 50 > n", ["--folds"], folds="50")
    diagnose("--folds 1", ["--folds"], folds="1")
    diagnose("--sweep-k 0,4", ["--sweep-k"], sweep_k="0,4")
    diagnose("--sweep-n 8,x", ["--sweep-n"], sweep_n="8,x")
    diagnose("--plot with a .pdf suffix", ["--plot"], plot=f"{D}/x.pdf")
    diagnose("--plot into a missing folder", ["--plot"], plot=f"{D}/missing/x.png")
    diagnose("--cache-dir is a file", ["--cache-dir", "a_file"], cache_dir=w["a_file"])
    diagnose("--extract-from missing file", ["--extract-from", "extract_from", "nope"], extract_from=f"{D}/nope.jsonl")
    diagnose("--extract-from .txt suffix", ["--extract-from", "extract_from", "q.txt"], extract_from=w["q_txt"])
    diagnose("--extract-from jsonl without question", ["--extract-from", "extract_from", "q_noq"],
             extract_from=w["q_noq"])  # fmt: skip
    diagnose("--extract-from empty jsonl", ["--extract-from", "extract_from", "q_empty"], extract_from=w["q_empty"])
    diagnose("--aggregator typo median", ["--aggregator"], aggregator="median")
    diagnose("--capability typo cott", ["--capability", "capability"], capability="cott")
    diagnose("--source path missing", ["--source", "none"], source=f"{D}/none")
    diagnose("--batch-size 0", ["--batch-size", "batch"], batch_size="0")
    diagnose("--source-locked of another architecture", ["--source-locked", "source_locked", "architecture"],
             source_locked=w["wt_gpt2"])  # fmt: skip

    # --- unlock-eval args
    add("unknown model", "args", [UE, "args", "unlok"], ["unlok"])
    add("two models", "args", [UE, "args", "unlock", "weight_transfer"], ["weight_transfer"])
    add("unknown flag --format", "args", [UE, "args", "--format", "json"], ["--format"])

    # --- unlock-eval cache list / prune (always on a scratch copy of the tiny run's cache)
    def cache_copy(d: Path):
        shutil.copytree(w["run_cache"], d / "cache")

    def left(d: Path):
        n = sum(1 for p in (d / "cache").rglob("*") if p.is_file()) if (d / "cache").is_dir() else 0
        total = sum(1 for p in Path(w["run_cache"]).rglob("*") if p.is_file())
        return None if n == total else f"cache: {n} of {total} files left"

    add("--cache-dir is a file", "cache list", [UE, "cache", "list", "--cache-dir", w["a_file"]], ["a_file"])
    add("--cache-dir missing", "cache list", [UE, "cache", "list", "--cache-dir", f"{D}/missing"], ["missing"])
    add("--kind typo merge", "cache list", [UE, "cache", "list", "--cache-dir", f"{D}/cache", "--kind", "merge"],
        ["--kind", "merge"], prep=cache_copy)  # fmt: skip
    add("UNLOCK_EVAL_CACHE_DIR is a file", "cache list", [UE, "cache", "list"], ["UNLOCK_EVAL_CACHE_DIR", "a_file"],
        env={"UNLOCK_EVAL_CACHE_DIR": w["a_file"]})  # fmt: skip
    add("no selector (neither --all, --kind nor --older-than)", "cache prune",
        [UE, "cache", "prune", "--cache-dir", f"{D}/cache"], ["--all", "--kind", "--older-than"], prep=cache_copy,
        check=left)  # fmt: skip
    add("--older-than -1", "cache prune", [UE, "cache", "prune", "--cache-dir", f"{D}/cache", "--older-than", "-1"],
        ["--older-than"], prep=cache_copy, check=left)  # fmt: skip
    add("--older-than week", "cache prune", [UE, "cache", "prune", "--cache-dir", f"{D}/cache", "--older-than", "week"],
        ["--older-than"], prep=cache_copy, check=left)  # fmt: skip
    add("--kind typo merge --all", "cache prune",
        [UE, "cache", "prune", "--cache-dir", f"{D}/cache", "--kind", "merge", "--all"], ["--kind", "merge"],
        prep=cache_copy, check=left)  # fmt: skip
    add("--cache-dir is a file", "cache prune", [UE, "cache", "prune", "--all", "--cache-dir", w["a_file"]], ["a_file"])
    add("--cache-dir missing", "cache prune", [UE, "cache", "prune", "--all", "--cache-dir", f"{D}/missing"],
        ["missing"])  # fmt: skip
    add("cache without list/prune", "cache", [UE, "cache"], ["list", "prune", "cache_command"])
    add("cache clean (no such action)", "cache", [UE, "cache", "clean"], ["clean"])
    return c


# ------------------------------------------------------------------------------------------- running one


def last_line(text: str) -> str:
    lines = [ANSI.sub("", ln.split("\r")[-1]).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1] if lines else ""


def run_case(case: Case, root: Path, env: dict) -> dict:
    d = root / "cases" / re.sub(r"[^\w.-]+", "_", f"{case.command}-{case.name}")[:120]
    d.mkdir(parents=True)
    if case.prep:
        case.prep(d)
    argv = [a.replace(D, str(d)) for a in case.argv]
    case_env = {**env, **{k: v.replace(D, str(d)) for k, v in case.env.items()}}
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=case_env, cwd=d,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=case.timeout)
        rc, timed_out = proc.returncode, False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this case started, nothing else
        out, err = proc.communicate()
        rc, timed_out = None, True
    seconds = time.monotonic() - start
    both = out + "\n" + err
    line = last_line(err) or last_line(out)
    traceback = "Traceback (most recent call last)" in both
    if timed_out:
        outcome = "other"
    elif traceback:
        outcome = "traceback"
    elif rc == 0:
        outcome = "silent"
    elif CLEAR.match(last_line(err)):
        outcome = "clear"
    else:
        outcome = "other"
    exceptions = [ln.strip() for ln in both.splitlines() if EXCEPTION.match(ln.strip())]
    named = any(n.lower() in line.lower() for n in case.names) if case.names else None
    line, err, out = (text.replace(str(root), "<tmp>") for text in (line, err, out))  # short lines in the table
    return {
        "case": case.name,
        "command": case.command,
        "argv": [a.replace(str(d), "<case>").replace(str(root), "<tmp>") for a in argv],
        "env": {k: v.replace(D, "<case>") for k, v in case.env.items()},
        "rc": rc,
        "timed_out": timed_out,
        "seconds": round(seconds, 1),
        "outcome": outcome,
        "last_line": line,
        "names_argument": named,
        "exception": exceptions[-1] if traceback and exceptions else None,
        "note": case.check(d) if case.check else None,
        "stderr_lines": len([ln for ln in err.splitlines() if ln.strip()]),
        "stderr_tail": err.splitlines()[-25:],
        "stdout_tail": out.splitlines()[-10:],
    }


# ------------------------------------------------------------------------------------------- report


def table(rows: list[list[str]], head: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*["-" * w for w in widths]), *(fmt.format(*r) for r in rows)])


def summary(results: list[dict]) -> str:
    outcomes = ["clear", "traceback", "silent", "other"]
    parts = [
        table(
            [[i + 1, r["case"], r["command"], r["outcome"], r["last_line"][:160]] for i, r in enumerate(results)],
            ["#", "case", "command", "outcome", "last stderr line"],
        )
    ]
    tally = Counter(r["outcome"] for r in results)
    parts.append(f"\n{len(results)} bad inputs: " + ", ".join(f"{tally[o]} {o}" for o in outcomes))
    commands = list(dict.fromkeys(r["command"] for r in results))
    per = [[c, *(sum(r["command"] == c and r["outcome"] == o for r in results) for o in outcomes),
            sum(r["command"] == c for r in results)] for c in commands]  # fmt: skip
    per.append(["all", *(tally[o] for o in outcomes), len(results)])
    parts.append(table(per, ["command", *outcomes, "cases"]))
    unnamed = [r for r in results if r["outcome"] == "clear" and r["names_argument"] is False]
    if unnamed:
        parts.append("\nclear lines that name none of the expected arguments/paths:")
        parts += [f"  {r['command']} / {r['case']}: {r['last_line'][:160]}" for r in unnamed]
    notes = [r for r in results if r["note"]]
    if notes:
        parts.append("\nleft behind:")
        parts += [f"  {r['command']} / {r['case']} ({r['outcome']}): {r['note']}" for r in notes]
    tracebacks = [r for r in results if r["outcome"] == "traceback"]
    if tracebacks:
        parts.append("\ntracebacks (last exception line):")
        parts += [f"  {r['command']} / {r['case']}: {(r['exception'] or '')[:160]}" for r in tracebacks]
    return "\n".join(parts)


def help_control(env: dict) -> str:
    """Not a bad input: `unlock-eval --help` should exit 0 and list every subcommand."""
    done = subprocess.run([UE, "--help"], capture_output=True, text=True, env=env, timeout=120)
    listed = re.findall(r"^ {4}(\w+)", done.stdout, re.M)
    expected = ["run", "report", "behaviour", "sweep", "demo", "diagnose", "pack", "args", "cache"]
    missing = [c for c in expected if c not in listed]
    return f"control: unlock-eval --help exit {done.returncode}, lists {', '.join(listed)}" + (
        f"; missing {', '.join(missing)}" if missing else "; every subcommand listed"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", help="write the full results here as JSON")
    p.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    p.add_argument("--only", help="only cases whose 'command / case' contains this text")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bad_inputs_"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("UNLOCK_EVAL_DATA_DIR", str(REPO.parent / "shared" / "data"))
    if not env.get("UNLOCK_EVAL_CACHE_DIR"):  # a scratch cache: nothing this round does touches the user's
        env["UNLOCK_EVAL_CACHE_DIR"] = str(root / "env_cache")
    try:
        print(f"bad_inputs: building the tiny world in {root}", file=sys.stderr)
        world = build_world(root / "world", env)
        todo = [c for c in cases(world) if not args.only or args.only in f"{c.command} / {c.name}"]
        print(f"bad_inputs: {len(todo)} cases, {args.jobs} at a time", file=sys.stderr)

        def one(case: Case) -> dict:
            r = run_case(case, root, env)
            print(f"  {r['outcome']:<9} {r['seconds']:>6.1f}s  {case.command} / {case.name}", file=sys.stderr)
            return r

        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(one, todo))
        print(summary(results))
        print("\n" + help_control(env))
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
