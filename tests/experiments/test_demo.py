"""The comparison demo (`unlock-eval demo`, behind `make demo`): every method through lm-eval, the leaderboard, the
HTML report with diagnostics and behaviour, and what a run reused from the cache."""

import re

import pytest

from adapter_fixtures import save_tiny

METHODS = ("plain", "prompted", "native_steering", "unlock", "logit_transfer")


def rows(table: str) -> dict[str, str]:
    """The leaderboard's rows by method (the first cell of each markdown row)."""
    found = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        method = cells[0].split(" (")[0]  # "unlock (alpha chosen on dev)"
        if line.startswith("|") and method in METHODS:
            found[method] = line
    return found


def test_backend_vllm_moves_the_plain_and_steered_rows_to_vllm_and_keeps_logit_transfer_on_hf(tmp_path):
    import argparse

    from unlock_eval.experiments.demo import add_arguments, plan

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    source, target = save_tiny(tmp_path / "src", "llama", 2, 16, 1), save_tiny(tmp_path / "tgt", "gpt2", 2, 24, 2)
    runs = {run.run_id: run for run in plan(parser.parse_args(["--backend", "vllm", "--source", source,
                                                               "--target", target]))}  # fmt: skip
    assert runs["plain"].model == "vllm" and "enforce_eager=True" in runs["plain"].model_args
    assert all("backend=vllm" in runs[r].model_args and runs[r].vllm for r in ("native", "unlock"))
    assert runs["logit"].model == "logit_transfer" and not runs["logit"].vllm
    default = {run.run_id: run for run in plan(parser.parse_args(["--source", source, "--target", target]))}
    assert default["plain"].model == "hf" and not any(run.vllm for run in default.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "0"], "unlock-eval demo: error: --limit=0: expected an integer >= 1"),
        (["--source", "gemma3-270m"], "unlock-eval demo: error: --source=gemma3-270m: the same model as --target"),
        (["--n", "8"], "unlock-eval demo: error: k=16 exceeds the number of prompts n=8"),
        (["--alphas", "0.1,x"], "unlock-eval demo: error: --alphas"),
    ],
)
def test_bad_demo_arguments_stop_in_one_line_before_any_model_loads(tmp_path, capsys, args, message):
    from unlock_eval.cli import main

    assert main(["demo", *args, "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(message)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # ten lm-eval evaluations, the report and its plots: ~10 s in this process
def test_demo_on_tiny_models_compares_every_method_and_reports_what_it_reused(
    tmp_path, monkeypatch, capsys, lm_eval_index
):
    """The whole demo once, in this process (the subcommand `unlock-eval demo` runs), on a cache that already holds the
    Unlock row's key and map (built here through `--model unlock` with the demo's arguments) but nothing for native
    steering: one run shows both the cold path and the reuse report. That a rerun reuses everything is
    test_adapter.test_cli_run_records_config_and_second_run_skips_extraction's and test_sweep's."""
    from unlock_eval.cli import main
    from unlock_eval.model_adapters.unlock import UnlockLM

    monkeypatch.setenv("UNLOCK_EVAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    source = save_tiny(tmp_path / "source", "llama", 3, 32, 0)
    target = save_tiny(tmp_path / "target", "qwen2", 2, 32, 1)
    warm = UnlockLM(source=source, target=target, n=8, k=2, capability="cot", extract_from="arith", device="cpu")
    assert warm.steering.extraction_forward_passes > 0  # built now: the demo's Unlock row finds it
    del warm
    out = tmp_path / "out"
    args = ["--source", source, "--target", target, "--limit", "3", "--n", "8", "--k", "2", "--max-gen-toks", "4"]
    args += ["--alphas", "0.1,0.2", "--dev-size", "2"]
    args += ["--device", "cpu", "--output", str(out), "--use_cache", str(tmp_path / "responses")]
    assert main(["demo", *args]) == 0
    stdout, stderr = capsys.readouterr()
    table = rows(stdout)
    assert set(table) == set(METHODS), stdout
    assert "3 documents per row: the 95% intervals are wide" in stdout
    assert re.search(r"\[2/4\] native steering .*: arith_unlock acc [0-9.]+ \(\d+ s; [1-9]\d* extraction", stderr)
    assert re.search(r"\[3/4\] Unlock .*: alpha=0\.[12] k=2 n=8 chosen on 2 dev documents", stderr)
    assert re.search(r"\[3/4\] Unlock .*: arith_unlock acc [0-9.]+ \(\d+ s; 0 extraction forward passes: cached key "
                     r"and map reused\)", stderr)  # fmt: skip
    assert "reused from the cache: the extraction artifacts of unlock\n" in stderr  # not native's: built in this run
    page = (out / "report.html").read_text()
    for needed in ('id="fig-diagnostics"', 'id="fig-behaviour"', "Diagnostics of the Unlock transfer", "verdict:"):
        assert needed in page, needed
    report = (out / "report.md").read_text()
    assert "first-word H (bits)" in report and "## Diagnostics of the Unlock transfer" in report
    assert list(tmp_path.glob("responses*"))  # --use_cache reached every lm-eval run: a rerun answers from it
