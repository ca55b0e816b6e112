"""Fault injection: a real process SIGKILLed at each stage (unlock_eval.faults.crash_point), then the next run repairs
itself, leaves no leftovers and gives the answers of a run that was never interrupted. The process boundary is the
subject here: each kill is a fresh interpreter."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from unlock_eval.faults import ENV

pytestmark = pytest.mark.process

EXTRACT = """
import sys
from unlock_eval.data.prompts import load_questions
from unlock_eval.methods.unlock.extractor import Extractor, build_unlock
from unlock_eval.methods.unlock.spec import UnlockSpec
src, tgt, questions, cache = sys.argv[1:5]
spec = UnlockSpec(source=src, target=tgt, k=4, n=8, extract_from=questions, cache_dir=cache, extract_batch_size=4)
art = build_unlock(Extractor.for_spec(spec, dtype="float32", progress=False), spec, load_questions(questions, 8))
print(art.hashes["target_key_checksum"])
"""

MERGE = """
import sys
from pathlib import Path
from unlock_eval.methods.weight_transfer.merge import merged_model
src, base, cache = sys.argv[1:4]
dirs = {"target": Path(base), "source": Path(src), "source_locked": Path(base)}
folder, _ = merged_model(dirs, {r: str(p) for r, p in dirs.items()}, 0.5, {r: str(p) for r, p in dirs.items()},
                         cache_dir=cache)
print(folder)
"""


def run(code: str, *args, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop(ENV, None)
    if crash:
        env[ENV] = crash
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)  # fmt: skip


def killed(result: subprocess.CompletedProcess) -> bool:
    return result.returncode == -signal.SIGKILL


def leftovers(root: Path) -> list[str]:
    """Temporary files and folders of writers (our atomic writes name them `*.tmp`, with the writer's pid)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".tmp" in p.name)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.safetensors"))}


def extract_here(world, cache: Path) -> str:
    """EXTRACT in this process (the run after a kill needs no process of its own): the key's checksum."""
    from unlock_eval.data.prompts import load_questions
    from unlock_eval.methods.unlock.extractor import Extractor, build_unlock
    from unlock_eval.methods.unlock.spec import UnlockSpec

    spec = UnlockSpec(source=world["src"], target=world["tgt"], k=4, n=8, extract_from=world["questions"],
                      cache_dir=str(cache), extract_batch_size=4)  # fmt: skip
    extractor = Extractor.for_spec(spec, dtype="float32", progress=False)
    return build_unlock(extractor, spec, load_questions(world["questions"], 8)).hashes["target_key_checksum"]


@pytest.fixture(scope="module")
def clean_key(tiny_world, tmp_path_factory) -> str:
    """The key an uninterrupted extraction gives (the subprocess script and this process agree: checked once)."""
    here = extract_here(tiny_world, tmp_path_factory.mktemp("clean"))
    out = run(EXTRACT, tiny_world["src"], tiny_world["tgt"], tiny_world["questions"], tmp_path_factory.mktemp("c2"))
    assert out.returncode == 0 and out.stdout.strip() == here, out.stderr[-2000:]
    return here


@pytest.mark.parametrize(
    "stage",
    ["capture", "artifact_write:states", "artifact_write:masterkey", "artifact_write:bases", "map_fit",
     "artifact_write:subspacemap"],
)  # fmt: skip
def test_an_extraction_killed_at_each_stage_is_repaired_by_the_next_run(stage, tiny_world, clean_key, tmp_path):
    args = (tiny_world["src"], tiny_world["tgt"], tiny_world["questions"], tmp_path)
    first = run(EXTRACT, *args, crash=stage)
    assert killed(first), (first.returncode, first.stderr[-2000:])
    assert extract_here(tiny_world, tmp_path) == clean_key  # the next run: the uninterrupted answer
    assert leftovers(tmp_path) == []


def test_a_merge_killed_between_shards_is_rebuilt_identical(tiny_world, tmp_path):
    args = (tiny_world["src"], tiny_world["src_base"])
    clean = run(MERGE, *args, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-2000:]
    first = run(MERGE, *args, tmp_path / "cache", crash="merge")
    assert killed(first), (first.returncode, first.stderr[-2000:])
    again = run(MERGE, *args, tmp_path / "cache")
    assert again.returncode == 0, again.stderr[-2000:]
    assert digest(Path(again.stdout.strip())) == digest(Path(clean.stdout.strip()))
    assert leftovers(tmp_path / "cache") == []
    assert json.loads((Path(again.stdout.strip()) / "unlock_eval_merge.json").read_text())["lam"] == 0.5


def test_a_report_killed_while_writing_leaves_the_old_page_and_the_next_run_cleans_up(tiny_world, tmp_path,
                                                                                      lm_eval_cli):  # fmt: skip
    from unlock_eval.cli import main

    results = tmp_path / "results"
    lm_eval_cli("--model", "hf", "--model_args", f"pretrained={tiny_world['tgt']}", "--tasks", "tiny_unlock_gen",
                "--include_path", tiny_world["tasks"], "--device", "cpu", "--output_path", results)  # fmt: skip
    page = tmp_path / "report.md"
    page.write_text("the previous report\n")
    code = "import sys; from unlock_eval.cli import main; sys.exit(main(sys.argv[1:]))"
    first = run(code, "report", results, "--out", page, crash="report_write:md")
    assert killed(first), (first.returncode, first.stderr[-2000:])
    assert page.read_text() == "the previous report\n" and len(leftovers(tmp_path)) == 1  # written, never renamed
    assert main(["report", str(results), "--out", str(page)]) == 0
    assert page.read_text().startswith("| method") and leftovers(tmp_path) == []
