"""lm-eval task definitions of unlock-eval: the YAML files in this directory (GSM8K, MATH, MATH-500,
AGIEval Math, SAT-Math) and their helpers in ``utils.py``; see README.md here. Installed as ``unlock_eval.tasks``.

The start-up hook adds this directory to every lm-eval TaskManager (``--include_path`` is not needed);
``TASKS_DIR`` is that directory. Nothing is imported here, so ``import unlock_eval.tasks`` is cheap.
"""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
