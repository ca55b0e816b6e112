"""The comparison demo (`unlock-eval demo`, behind `make demo`): every method through lm-eval, the leaderboard, the
HTML report with diagnostics and behaviour, and a second run that reuses what the first one built."""

import os
import re
import subprocess
import sys

import pytest

from adapter_fixtures import save_tiny

METHODS = ("plain", "prompted", "native_steering", "unlock", "logit_transfer")


def demo(cwd, *args, cache=None):
    env = {**os.environ, **({"UNLOCK_EVAL_CACHE_DIR": str(cache)} if cache else {})}
    return subprocess.run(
        [sys.executable, "-m", "unlock_eval.cli", "demo", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip


def rows(table: str) -> dict[str, str]:
    """The leaderboard's rows by method (the first cell of each markdown row)."""
    found = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        method = cells[0].split(" (")[0]  # "unlock (alpha chosen on dev)"
        if line.startswith("|") and method in METHODS:
            found[method] = line
    return found


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


def test_demo_on_tiny_models_compares_every_method_and_a_rerun_reuses_the_artifacts(tmp_path):
    source = save_tiny(tmp_path / "source", "llama", 3, 32, 0)
    target = save_tiny(tmp_path / "target", "qwen2", 2, 32, 1)
    out = tmp_path / "out"
    args = ["--source", source, "--target", target, "--limit", "3", "--n", "8", "--k", "2", "--max-gen-toks", "4"]
    args += ["--alphas", "0.1,0.2", "--dev-size", "2"]
    args += ["--device", "cpu", "--output", str(out), "--use_cache", str(tmp_path / "responses")]
    cold = demo(tmp_path, *args, cache=tmp_path / "cache")
    assert cold.returncode == 0, cold.stderr[-3000:]
    table = rows(cold.stdout)
    assert set(table) == set(METHODS), cold.stdout
    assert "3 documents per row: the 95% intervals are wide" in cold.stdout
    assert re.search(r"\[2/4\] native steering .*: arith_unlock acc [0-9.]+ \(\d+ s; [1-9]\d* extraction", cold.stderr)
    assert re.search(r"\[3/4\] Unlock .*: alpha=0\.[12] k=2 n=8 chosen on 2 dev documents", cold.stderr)
    assert "reused from the cache: nothing" in cold.stderr
    page = (out / "report.html").read_text()
    for needed in ('id="fig-diagnostics"', 'id="fig-behaviour"', "Diagnostics of the Unlock transfer", "verdict:"):
        assert needed in page, needed
    report = (out / "report.md").read_text()
    assert "first-word H (bits)" in report and "## Diagnostics of the Unlock transfer" in report

    warm = demo(tmp_path, *args, cache=tmp_path / "cache")
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert "0 extraction forward passes: cached key and map reused" in warm.stderr
    reused = "reused from the cache: the extraction artifacts of native; the extraction artifacts of unlock"
    assert reused in warm.stderr

    def scores(found):  # every cell but set-up seconds and extra passes (a warm start is faster)
        return {method: line.split("|")[:-3] for method, line in found.items()}

    assert scores(rows(warm.stdout)) == scores(table)  # the response cache served the same answers
