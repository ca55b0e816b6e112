"""Agreement table: unlock_eval.checker vs lm-eval's own math checkers vs plain math-verify, on the same
(pred, gold) pairs.

Checkers compared:

* ``unlock``       ``unlock_eval.checker.is_equiv(pred, gold)``
* ``minerva``      lm-eval 0.4.13 ``tasks/minerva_math/utils.py``:
                   ``is_equiv(normalize_final_answer(pred), normalize_final_answer(gold))`` (sympy's
                   ``parse_latex``). That file and ``parse_latex`` need antlr4-python3-runtime 4.11, while
                   math-verify needs 4.13, so this column runs in a child process whose ``sys.path``
                   starts with a directory holding antlr4 4.11 (``--antlr411 DIR``; make one with
                   ``pip install --target DIR "antlr4-python3-runtime==4.11.*"``) and with a stub for the
                   ``math_verify`` import that file makes but ``is_equiv`` never uses. Without it the
                   column reads n/a.
* ``hendrycks``    lm-eval 0.4.13 ``tasks/hendrycks_math/utils.py``: ``is_equiv(pred, gold)`` (string
                   normalisation, no sympy).
* ``math-verify``  plain ``math_verify.verify(parse(gold), parse(pred))`` with default settings.
* ``math-verify $…$``  the same with each answer wrapped in ``$...$`` first (how math-verify expects a
                   bare LaTeX answer); shows what our hand-written part adds on top of math-verify.

Pairs: the hand-written table of tests/test_checker.py (``CASES``: category, pred, gold, expected),
and real data from $UNLOCK_EVAL_DATA_DIR (default ../shared/data): MATH-500's and AGIEval Math's
``answer`` vs the boxed answer of the same problem's MATH solution (expected equal), and random
cross-problem pairs of MATH gold answers (expected different unless the simple ``surface_equal``
oracle of tests/test_checker_real_data.py calls them equal; such pairs are not drawn).

    python benchmarks/checker_agreement.py [--cross 2000] [--antlr411 DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import subprocess
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _lm_eval_tasks_dir() -> Path:
    return Path(importlib.util.find_spec("lm_eval").origin).parent / "tasks"


# --------------------------------------------------------------------------------------------------
# The checkers
# --------------------------------------------------------------------------------------------------


def run_unlock(pairs):
    from unlock_eval.checker import Checker

    with Checker() as ck:
        return [ck.is_equiv(pred, gold) for pred, gold in pairs]


def run_math_verify(pairs):
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    out = []
    for pred, gold in pairs:
        try:
            out.append(bool(verify(parse(gold), parse(pred))))
        except Exception:  # noqa: BLE001 - any failure counts as 'not equal', as in the library
            out.append(False)
    return out


def run_math_verify_dollars(pairs):
    """math-verify as its README suggests for bare answers: each wrapped in $...$ before parse."""
    return run_math_verify([(f"${pred}$", f"${gold}$") for pred, gold in pairs])


def run_hendrycks(pairs):
    hendrycks = _load(_lm_eval_tasks_dir() / "hendrycks_math" / "utils.py", "lm_eval_hendrycks_math_utils")
    out = []
    for pred, gold in pairs:
        try:
            out.append(bool(hendrycks.is_equiv(pred, gold)))
        except Exception:  # noqa: BLE001
            out.append(False)
    return out


def _minerva_child(antlr_dir: str) -> None:
    """Child process: read [[pred, gold], ...] on stdin, print [bool, ...] (minerva's is_equiv)."""
    sys.path.insert(0, antlr_dir)
    sys.modules["math_verify"] = types.SimpleNamespace(parse=None, verify=None)  # imported, not used
    minerva = _load(_lm_eval_tasks_dir() / "minerva_math" / "utils.py", "lm_eval_minerva_math_utils")
    logging.getLogger(minerva.__name__).setLevel(logging.CRITICAL)
    out = []
    for pred, gold in json.load(sys.stdin):
        try:
            out.append(
                bool(minerva.is_equiv(minerva.normalize_final_answer(pred), minerva.normalize_final_answer(gold)))
            )
        except Exception:  # noqa: BLE001
            out.append(False)
    json.dump(out, sys.stdout)


def run_minerva(pairs, antlr_dir: Path | None):
    if antlr_dir is None or not (antlr_dir / "antlr4").is_dir():
        print(
            f"minerva: no antlr4 4.11 directory ({antlr_dir}); column skipped. Create one with\n"
            f'  pip install --target DIR "antlr4-python3-runtime==4.11.*"   and pass --antlr411 DIR',
            file=sys.stderr,
        )
        return None
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--minerva-child", str(antlr_dir)],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"minerva: child process failed; column skipped.\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------------------------------
# Pairs and the table
# --------------------------------------------------------------------------------------------------


def build_pairs(cross: int) -> list[tuple[str, str, str, bool]]:
    """(group, pred, gold, expected) for the hand-written table and the real data."""
    table = _load(REPO / "tests" / "test_checker.py", "unlock_tests_checker").CASES
    real = _load(REPO / "tests" / "test_checker_real_data.py", "unlock_tests_checker_real_data")
    rows = [(f"table: {category}", pred, gold, expected) for category, pred, gold, expected in table]
    if not (real.data_dir() / "math" / "test.jsonl").is_file():
        print(f"real data not found at {real.data_dir()}: table pairs only", file=sys.stderr)
        return rows
    rows += [
        (f"real: {source} answer vs MATH solution", pred, gold, True)
        for source, pred, gold in real.same_problem_pairs()
    ]
    rows += [
        ("real: MATH cross-problem pairs", pred, gold, False)
        for pred, gold in real.cross_pairs(real.math_golds(), cross, seed=20260406)
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cross", type=int, default=2000, help="random cross-problem MATH pairs (default 2000)")
    parser.add_argument("--antlr411", type=Path, default=None, help="directory holding antlr4-python3-runtime 4.11")
    parser.add_argument("--json", type=Path, default=None, help="also write every pair's verdicts here")
    parser.add_argument("--minerva-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.minerva_child:
        _minerva_child(args.minerva_child)
        return 0
    if args.cross < 0:
        parser.error(f"--cross must be >= 0, got {args.cross}")

    from tabulate import tabulate

    rows = build_pairs(args.cross)
    pairs = [(pred, gold) for _, pred, gold, _ in rows]
    verdicts, seconds = {}, {}
    for name, run in (
        ("unlock", run_unlock),
        ("minerva", lambda p: run_minerva(p, args.antlr411)),
        ("hendrycks", run_hendrycks),
        ("math-verify", run_math_verify),
        ("math-verify $…$", run_math_verify_dollars),
    ):
        start = time.monotonic()
        verdicts[name] = run(pairs)
        seconds[name] = time.monotonic() - start
    names = [n for n in verdicts if verdicts[n] is not None]

    # 1. Agreement with the expected verdict, per group of pairs.
    groups = list(dict.fromkeys(group for group, *_ in rows))
    if any(g.startswith("table: ") for g in groups):
        groups.insert(max(i for i, g in enumerate(groups) if g.startswith("table: ")) + 1, "table: all")
    table = []
    for group in groups:
        idx = [
            i
            for i, row in enumerate(rows)
            if row[0] == group or (group == "table: all" and row[0].startswith("table: "))
        ]
        line = [group, len(idx)]
        for name in names:
            right = sum(verdicts[name][i] == rows[i][3] for i in idx)
            line.append(f"{right}/{len(idx)} ({right / len(idx):.1%})")
        table.append(line)
    cross_idx = [i for i, row in enumerate(rows) if row[0] == "real: MATH cross-problem pairs"]
    if cross_idx:
        table.append(
            ["false positives on cross pairs", len(cross_idx)]
            + [f"{sum(verdicts[n][i] for i in cross_idx) / len(cross_idx):.2%}" for n in names]
        )
    table.append(["seconds", len(rows)] + [f"{seconds[n]:.1f}" for n in names])
    print("\nAgreement with the expected verdict\n")
    print(tabulate(table, headers=["pairs", "n", *names], tablefmt="github"))

    # 2. Pairwise agreement between the checkers, over all pairs.
    matrix = []
    for a in names:
        matrix.append([a] + [f"{sum(x == y for x, y in zip(verdicts[a], verdicts[b])) / len(rows):.1%}" for b in names])
    print("\nPairwise agreement (share of all pairs with the same verdict)\n")
    print(tabulate(matrix, headers=["", *names], tablefmt="github"))

    # 3. Where our checker departs from the expectation (should be empty or explained).
    misses = [(row[0], row[1], row[2], row[3]) for i, row in enumerate(rows) if verdicts["unlock"][i] != row[3]]
    if misses:
        print("\nunlock checker vs expectation:")
        for group, pred, gold, expected in misses[:40]:
            print(f"  [{group}] pred={pred!r} gold={gold!r} expected={expected}")
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {"group": g, "pred": p, "gold": gd, "expected": e, **{n: verdicts[n][i] for n in names}}
                    for i, (g, p, gd, e) in enumerate(rows)
                ],
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
