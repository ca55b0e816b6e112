"""`unlock-eval pack` on the tiny models, in this process: a pack from --model_args (a second one is the same file but
its date, made without an extraction pass), `pack inspect` and `pack compare`, a pack from a results folder (what the
run applied, its key checked against the run's record), the llama.cpp export read back with gguf's own reader, and
every bad input as one line and exit status 2."""

import json
import re
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from unlock_eval.cache import load_artifact, save_artifact
from unlock_eval.cache import sha256_of as file_sha256
from unlock_eval.cli import main
from unlock_eval.experiments.packs import control_vectors
from unlock_eval.methods.unlock.masterkey import MasterKey
from unlock_eval.methods.unlock.pack import CapabilityPack
from unlock_eval.methods.unlock.steering import SteeringSetup

from adapter_fixtures import save_tiny

ERROR = "unlock-eval pack: error: "


def transfer_args(world, cache, target=None, **extra) -> str:
    """--model_args of the tiny transfer (as tests/model_adapters/test_unlock.py writes them), without alpha."""
    args = {
        "source": world["src"],
        "target": target or world["tgt"],
        "k": 4,
        "n": 8,
        "extract_from": world["questions"],
        "cache_dir": cache,
        "device": "cpu",
        **extra,
    }
    return ",".join(f"{k}={v}" for k, v in args.items() if v is not None)


def pack_main(*argv) -> int:
    return main(["pack", *map(str, argv)])


def one_line_error(capsys, *culprits: str, after_work: bool = False) -> str:
    """The stderr of a refused command: one line naming every culprit (after the progress bars of the work it did
    first, `after_work`), and nothing on stdout."""
    out, err = capsys.readouterr()
    if after_work:
        err = err.splitlines(keepends=True)[-1]
    assert out == "" and err.startswith(ERROR) and err.count("\n") == 1, err
    for culprit in culprits:
        assert culprit in err, (culprit, err)
    return err


def cache_files(cache: Path) -> dict[str, bytes]:
    """Every artifact in the cache (states, keys, maps, bases, diagnostics) by its path, with its bytes."""
    return {str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*.safetensors"))}


def bits(tensor: torch.Tensor) -> tuple:
    return tensor.dtype, tuple(tensor.shape), tensor.contiguous().numpy().tobytes()


@pytest.fixture(scope="module")
def made(tiny_world, tmp_path_factory):
    """One pack of the tiny transfer (llama source -> gpt2 target, k=4, n=8), made once for the module in its own
    cache, with the states that made it; its extraction questions are the module's own copy (a test changes them)."""
    root = tmp_path_factory.mktemp("packs")
    world = {**tiny_world, "questions": str(root / "questions.jsonl")}
    shutil.copyfile(tiny_world["questions"], world["questions"])
    cache = root / "cache"
    model_args = transfer_args(world, cache)
    pack = root / "p.safetensors"
    assert pack_main("--model_args", model_args, "--output", pack) == 0
    return {"root": root, "cache": cache, "model_args": model_args, "pack": pack, "world": world}


# ------------------------------------------------------------------------------------------------ --model_args


def test_a_second_pack_is_the_same_file_but_its_date_and_runs_no_extraction(made, capsys, monkeypatch):
    capsys.readouterr()
    before = cache_files(made["cache"])
    assert any(name.startswith("states/") for name in before)
    passes = []
    build = SteeringSetup.build.__func__

    def counted(cls, *args, **kwargs):
        setup = build(cls, *args, **kwargs)
        passes.append(setup.extraction_forward_passes)
        return setup

    monkeypatch.setattr(SteeringSetup, "build", classmethod(counted))
    again = made["root"] / "again.safetensors"
    assert pack_main("--model_args", made["model_args"], "--output", again) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"wrote {again} (sha256 ") and f"key={again}" in out
    assert passes == [0] and "capture" not in err  # no model ran: no progress bar of a capture either
    assert cache_files(made["cache"]) == before  # nothing new in the cache, nothing rewritten

    first_tensors, first_meta = load_artifact(made["pack"])
    second_tensors, second_meta = load_artifact(again)
    assert sorted(first_tensors) == sorted(second_tensors)
    for name, tensor in first_tensors.items():
        assert bits(tensor) == bits(second_tensors[name]), name
    assert first_meta.pop("created") != "" and second_meta.pop("created")
    assert first_meta == second_meta
    # and byte for byte: the second pack with the first one's date is the first file
    dated = made["root"] / "dated.safetensors"
    save_artifact(dated, second_tensors, {**second_meta, "created": load_artifact(made["pack"])[1]["created"]})
    assert dated.read_bytes() == made["pack"].read_bytes()


# ------------------------------------------------------------------------------------------------ inspect, compare


def test_inspect_names_the_transfer_its_verdict_and_each_target_layer(made, capsys):
    pack = CapabilityPack.load(made["pack"])
    world = made["world"]
    capsys.readouterr()
    assert pack_main("inspect", made["pack"]) == 0
    text = capsys.readouterr().out
    assert re.search(rf"^  source +{re.escape(world['src'])}  \[files ", text, re.M)
    assert re.search(rf"^  target +{re.escape(world['tgt'])}  \[files ", text, re.M)
    assert "n=8, k=4" in text and f"{world['questions']}, n=8, questions sha256 " in text
    verdict = pack.provenance["diagnostics"]["verdict"]
    assert verdict and f"  verdict       {verdict}" in text
    rows = re.findall(r"^ +(\d+) +(\d+) +(\d+\.\d{4}) ", text, re.M)
    assert [int(row[0]) for row in rows] == list(range(pack.num_layers)) == [0, 1, 2]
    assert [int(row[1]) for row in rows] == pack.provenance["layer_map"] == [0, 1, 3]
    assert [float(row[2]) for row in rows] == [round(float(n), 4) for n in pack.norms()]
    assert "applied" not in text  # made from --model_args: no run applied it

    assert pack_main("inspect", made["pack"], "--json") == 0
    view = json.loads(capsys.readouterr().out)
    assert view["file"] == str(made["pack"]) and view["verdict"] == verdict and view["applied"] is None
    assert view["models"]["source"]["spec"] == world["src"] and view["models"]["target"]["spec"] == world["tgt"]
    assert view["arguments"]["n"] == 8 and view["arguments"]["k"] == 4
    assert view["target_shape"] == {"num_layers": 3, "hidden_size": 48}
    assert [row["layer"] for row in view["layers"]] == [0, 1, 2]
    assert [row["norm"] for row in view["layers"]] == [round(float(n), 6) for n in pack.norms()]
    assert [row["norm"] for row in view["layers"]] == pytest.approx(pack.norms().tolist(), abs=1e-6)


def test_compare_of_a_pack_with_itself_is_cosine_one_on_every_layer(made, capsys):
    capsys.readouterr()
    assert pack_main("compare", made["pack"], made["pack"], "--json") == 0
    view = json.loads(capsys.readouterr().out)
    assert view["cosine"] == [1.0, 1.0, 1.0] and view["mean"] == view["min"] == view["max"] == 1.0
    assert view["target"] == made["world"]["tgt"]
    assert pack_main("compare", made["pack"], made["pack"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"cosine per target layer of {made['pack']} and {made['pack']}")
    assert [line.strip() for line in lines[2:]] == [f"layer   {layer}  +1.0000" for layer in range(3)]


def test_compare_of_packs_for_different_targets_is_one_line_naming_both_files(made, capsys):
    world, root = made["world"], made["root"]
    other_width = root / "other_width.safetensors"  # the llama base as target: [4, 32], not [3, 48]
    assert pack_main("--model_args", transfer_args(world, made["cache"], world["src_base"]), "-o", other_width) == 0
    twin = save_tiny(root / "tgt_twin", "gpt2", 3, 48, 7)  # the target's shape, other weights
    other_weights = root / "other_weights.safetensors"
    assert pack_main("--model_args", transfer_args(world, made["cache"], twin), "-o", other_weights) == 0
    capsys.readouterr()
    assert pack_main("compare", made["pack"], other_width) == 2
    one_line_error(capsys, str(made["pack"]), str(other_width), "[3, 48]", "[4, 32]")
    assert pack_main("compare", other_weights, made["pack"]) == 2
    one_line_error(capsys, str(other_weights), str(made["pack"]), "one target only")


# ------------------------------------------------------------------------------------------------ --from results


@pytest.fixture(scope="module")
def runs(made, lm_eval_index):
    """Two `lm_eval --model unlock` runs of the tiny transfer on tiny_unlock_gen, at alpha 0.5 and 0.2, logged into
    one output folder (their files, oldest first), on the pack's cache."""
    import logging
    import sys

    from unlock_eval.model_adapters.inprocess import run_lm_eval

    world, out = made["world"], made["root"] / "out"
    logger = logging.getLogger("lm_eval")  # what conftest's autouse fixture restores after a test, for the module
    saved = logger.level, logger.propagate, list(logger.handlers)
    files = []
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "argv", list(sys.argv))
            for alpha in (0.5, 0.2):
                model_args = transfer_args(world, made["cache"], alpha=alpha, device=None)  # --device cpu says it
                argv = ["--model", "unlock", "--model_args", model_args, "--tasks", "tiny_unlock_gen"]
                argv += [
                    "--include_path",
                    world["tasks"],
                    "--output_path",
                    str(out),
                    "--log_samples",
                    "--device",
                    "cpu",
                ]
                run_lm_eval(argv)
                files.append(next(f for f in sorted(out.rglob("results_*.json")) if f not in files))
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]
    return {"out": out, "files": files}


def record_of(results_file: Path) -> dict:
    return json.loads(results_file.read_text())["config"]["unlock_eval"]


def test_a_pack_from_a_results_file_keeps_what_the_run_applied_and_its_key(made, runs, capsys):
    cache, (first, second) = made["cache"], runs["files"]
    capsys.readouterr()
    for results, alpha in ((first, 0.5), (second, 0.2)):
        output = made["root"] / f"from_{alpha}.safetensors"
        assert pack_main("--from", results, "--cache-dir", cache, "--output", output) == 0
        pack = CapabilityPack.load(output)
        applied = pack.provenance["applied"]
        record = record_of(results)
        assert applied["alpha"] == alpha == record["hyperparameters"]["alpha"]
        assert applied["mode"] == record["hyperparameters"]["mode"] == "prefill_last"
        assert applied["layers"] == record["details"]["layers_resolved"] == "all"
        scores = json.loads(results.read_text())["results"]["tiny_unlock_gen"]
        assert applied["scores"] == {"tiny_unlock_gen": {"exact_match": scores["exact_match,none"]}}
        assert applied["results"] == [{"file": results.name, "sha256": file_sha256(results)}]
        # the key the run steered with, which is the key of the same transfer made from --model_args
        model_args_pack = CapabilityPack.load(made["pack"])
        assert bits(pack.target_key.vectors) == bits(model_args_pack.target_key.vectors)
        assert bits(pack.target_norms) == bits(model_args_pack.target_norms)
        assert pack.provenance["hashes"]["target_key_checksum"] == record["details"]["artifacts"]["target_key_checksum"]
        assert "capture" not in capsys.readouterr().err  # rebuilt from the cache the run filled
    assert pack_main("inspect", output) == 0
    assert "  applied       alpha=0.2, mode=prefill_last, layers=all" in capsys.readouterr().out
    # exported for llama.cpp, it keeps the alpha its run applied unless --alpha says another
    exported = made["root"] / "from_0.2.gguf"
    assert pack_main("--from", output, "--format", "gguf", "--output", exported) == 0
    assert "control vector at alpha=0.2, " in capsys.readouterr().out
    expected = control_vectors(CapabilityPack.load(output), 0.2)
    assert {name: array.tobytes() for name, array in read_gguf(exported)[1].items()} == {
        f"direction.{layer}": vector.numpy().tobytes() for layer, vector in expected.items() if layer != 0
    }


def test_a_results_folder_of_two_configurations_is_refused_in_one_line(made, runs, capsys):
    output = made["root"] / "two.safetensors"
    capsys.readouterr()
    assert pack_main("--from", runs["out"], "--cache-dir", made["cache"], "--output", output) == 2
    names = [results.name for results in runs["files"]]
    one_line_error(capsys, f"--from {runs['out']}", "2 --model unlock configurations", *names, "give one results file")
    assert not output.exists()


def test_a_record_naming_another_key_is_refused_naming_both_checksums(made, runs, capsys):
    edited = made["root"] / "edited" / runs["files"][0].name
    edited.parent.mkdir()
    data = json.loads(runs["files"][0].read_text())
    recorded = data["config"]["unlock_eval"]["details"]["artifacts"]["target_key_checksum"]
    data["config"]["unlock_eval"]["details"]["artifacts"]["target_key_checksum"] = "0" * 24
    edited.write_text(json.dumps(data))
    output = made["root"] / "edited.safetensors"
    capsys.readouterr()
    assert pack_main("--from", edited.parent, "--cache-dir", made["cache"], "--output", output) == 2
    one_line_error(capsys, f"checksum {recorded}", "0" * 24, edited.name, "changed since that run")
    assert not output.exists()


def test_a_key_rebuilt_from_changed_data_is_refused_naming_both_checksums(made, runs, tmp_path, capsys):
    """The cache is gone (another one) and the extraction questions changed since the run: the key rebuilt is
    another, and no pack is made from it."""
    questions, results = Path(made["world"]["questions"]), runs["files"][0]
    kept = questions.read_bytes()
    output = tmp_path / "changed.safetensors"
    capsys.readouterr()
    try:
        questions.write_text("".join(reversed(kept.decode().splitlines(keepends=True))))
        assert pack_main("--from", results, "--cache-dir", tmp_path / "cleared", "--output", output) == 2
    finally:
        questions.write_bytes(kept)
    recorded = record_of(results)["details"]["artifacts"]["target_key_checksum"]
    err = one_line_error(capsys, f"({recorded})", results.name, "models, data or cache changed", after_work=True)
    rebuilt = re.search(r"checksum ([0-9a-f]+)\)", err).group(1)
    assert rebuilt != recorded and not output.exists()


def test_a_results_folder_without_an_unlock_run_is_refused_in_one_line(made, lm_eval_cli, capsys):
    out = made["root"] / "hf_only"
    world = made["world"]
    argv = ["--model", "hf", "--model_args", f"pretrained={world['tgt']},dtype=float32", "--tasks", "tiny_unlock_gen"]
    lm_eval_cli(*argv, "--include_path", world["tasks"], "--output_path", out, "--device", "cpu")
    assert list(out.rglob("results_*.json"))
    capsys.readouterr()
    assert pack_main("--from", out, "--output", made["root"] / "hf.safetensors") == 2
    one_line_error(capsys, f"--from {out}", "none of its results files holds a --model unlock run")


# ------------------------------------------------------------------------------------------------ --format gguf


def read_gguf(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    reader = gguf.GGUFReader(path)
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    return fields, {t.name: np.array(t.data) for t in reader.tensors}


@pytest.mark.parametrize("alpha", [None, 0.3])
def test_a_gguf_export_is_the_packs_control_vectors_at_alpha(made, capsys, caplog, alpha):
    output = made["root"] / f"p_{alpha}.gguf"
    flags = [] if alpha is None else ["--alpha", alpha]
    capsys.readouterr()
    assert pack_main("--from", made["pack"], "--format", "gguf", "--output", output, *flags) == 0
    assert "layer 0 is left out" in caplog.text  # said, not silently dropped
    used = 0.1 if alpha is None else alpha  # a pack made from --model_args applied no alpha: the default
    assert capsys.readouterr().out == (
        f"wrote {output}: a llama.cpp control vector at alpha={used}, layers 1-2 of 3 "
        f"(llama-cli --control-vector-scaled {output}:1.0)\n"
    )
    fields, tensors = read_gguf(output)
    assert fields["general.architecture"] == "controlvector"
    assert fields["controlvector.model_hint"] == "gpt2" and fields["controlvector.layer_count"] == 3
    expected = control_vectors(CapabilityPack.load(made["pack"]), used)
    # llama.cpp adds direction.N to the output of 0-based block N and never steers block 0 (pack_gguf's notes)
    written = {layer: vector for layer, vector in expected.items() if layer != 0}
    assert sorted(tensors) == [f"direction.{layer}" for layer in sorted(written)] == ["direction.1", "direction.2"]
    for layer, vector in written.items():
        array = tensors[f"direction.{layer}"]
        assert array.dtype == np.float32 and array.tobytes() == vector.numpy().tobytes()  # bit for bit


# ------------------------------------------------------------------------------------------------ errors


def bad_field_pack(made, path: Path) -> str:
    tensors, meta = load_artifact(made["pack"])
    del meta["hashes"]
    save_artifact(path, tensors, meta)
    return "metadata field 'hashes' is missing"


ERRORS = {
    "no output": (lambda made, tmp: ["--model_args", made["model_args"]], ["--output is required"]),
    "both sources": (
        lambda made, tmp: ["--model_args", made["model_args"], "--from", made["pack"], "-o", tmp / "x.safetensors"],
        ["--model_args", "--from", "one of them"],
    ),
    "gguf suffix": (
        lambda made, tmp: ["--from", made["pack"], "--output", tmp / "x.gguf"],
        ["--output", "x.gguf", "--format gguf"],
    ),
    "alpha without gguf": (
        lambda made, tmp: ["--from", made["pack"], "--alpha", "0.3", "--output", tmp / "x.safetensors"],
        ["--alpha", "--format gguf"],
    ),
    "key in model_args": (
        lambda made, tmp: ["--model_args", f"key={made['pack']},{made['model_args']}", "-o", tmp / "x.safetensors"],
        ["key=", "a pack already"],
    ),
    "inspect two paths": (lambda made, tmp: ["inspect", made["pack"], made["pack"]], ["pack inspect", "expected 1"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_arguments_are_one_line_and_exit_two(made, tmp_path, capsys, case):
    argv, culprits = ERRORS[case]
    capsys.readouterr()
    assert pack_main(*argv(made, tmp_path)) == 2
    one_line_error(capsys, *culprits)
    assert list(tmp_path.iterdir()) == []  # nothing written


def truncated(made, path: Path) -> str:
    data = made["pack"].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "corrupt or not a capability pack"


INSPECT_ERRORS = {
    "pickle": ("key.pt", lambda made, path: path.write_bytes(b"\x80\x04N.") and "a pickle file name (.pt)"),
    "truncated": ("cut.safetensors", truncated),
    "master key": (
        "key.safetensors",
        lambda made, path: MasterKey(torch.randn(3, 48)).save(path) and "a MasterKey file, not a capability pack",
    ),
    "missing field": ("old.safetensors", bad_field_pack),
    "missing file": ("absent.safetensors", lambda made, path: "no such file"),
}


@pytest.mark.parametrize("case", list(INSPECT_ERRORS))
def test_inspect_of_what_is_not_a_pack_is_one_line_naming_the_file(made, tmp_path, capsys, case):
    name, make = INSPECT_ERRORS[case]
    path = tmp_path / name
    message = make(made, path)
    capsys.readouterr()
    assert pack_main("inspect", path) == 2
    one_line_error(capsys, str(path), message)
    assert pack_main("--from", path, "--format", "gguf", "--output", tmp_path / "x.gguf") == 2
    one_line_error(capsys, f"--from={path}", message)
    assert not (tmp_path / "x.gguf").exists()


def test_a_sweep_over_alpha_steers_with_the_pack(made, tmp_path, capsys):
    """`unlock-eval sweep` with key=: the alphas of one pack, named after its k and n, which are not sweepable."""
    world, pack = made["world"], made["pack"]
    base = f"target={world['tgt']},key={pack},cache_dir={made['cache']}"
    common = ["--tasks", "tiny_unlock_gen", "--include_path", world["tasks"], "--limit", "1", "--device", "cpu"]
    assert (
        main([str(a) for a in ["sweep", "--model_args", base, "--ks", "2,4", *common, "--output_path", tmp_path]]) == 2
    )
    assert "k and n are fixed by the capability pack" in capsys.readouterr().err
    out = tmp_path / "sweep"
    argv = ["sweep", "--model_args", base, "--alphas", "0.1,0.5", *common, "--no-baseline", "--output_path", out]
    assert main([str(a) for a in argv]) == 0
    points = sorted(p.name for p in (out / "points").iterdir())
    assert points == ["n8_k4_alpha0.1", "n8_k4_alpha0.5"]
    records = [json.loads(f.read_text())["config"]["unlock_eval"] for f in sorted(out.rglob("results_*.json"))]
    assert [r["hyperparameters"]["alpha"] for r in records] == [0.1, 0.5]
    assert all(r["details"]["packs"][0]["sha256"] == file_sha256(pack) for r in records)
