"""Entry script of the comparison worker process: the sympy/math-verify side of ``worker.Checker``.

It runs the comparisons in a process of its own, so that the parent can enforce a hard time limit
by killing it.

Started by ``Checker`` as ``python _worker_main.py MEMORY_LIMIT_BYTES PARENT_PID`` (never by hand).
Protocol, one JSON value per line:

* on start-up, after imports and a warm-up: ``"ready"`` on stdout;
* then, for every request ``[id, pred, gold]`` (both already normalised) on stdin: ``[id, true|false]``.

The worker exits when stdin closes. It is run as a file, not with ``-m``, and it loads
``equivalence.py`` (and the ``extract.py`` it imports) from its own directory as submodules of a bare,
private package: neither ``unlock_eval/__init__.py`` nor ``unlock_eval/checker/__init__.py`` runs
here, so the worker imports nothing it does not need and always runs the same files as its parent,
whatever ``sys.path`` the parent had. stdout is reserved for the protocol: anything else printed (even
from C) goes to stderr, which the parent shows if start-up fails.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import signal
import sys
import types

_PR_SET_PDEATHSIG = 1
#: Name of the bare package the worker loads this directory's modules under.
_PACKAGE = "_unlock_eval_checker_in_worker"


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL us when the parent thread that started us exits (best effort)."""
    if parent_pid <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def _load_equivalence(here: str):
    """``equivalence.py`` of ``here``, imported as ``_PACKAGE.equivalence`` without running any
    ``__init__.py``: the package object is bare, only its ``__path__`` points at ``here``, so the
    module's relative imports (``from unlock_eval.checker.extract import ...``) resolve to files beside this one."""
    package = types.ModuleType(_PACKAGE)
    package.__path__ = [here]
    package.__package__ = _PACKAGE
    sys.modules[_PACKAGE] = package
    return importlib.import_module(f"{_PACKAGE}.equivalence")


def main() -> None:
    memory_limit, parent_pid = int(sys.argv[1]), int(sys.argv[2])

    # Running a file puts its directory first on sys.path: drop it, so that no sibling module of the
    # package can shadow a standard or third-party module imported below.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]

    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    _die_with_parent(parent_pid)
    if memory_limit > 0:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        except (ValueError, OSError):
            pass

    equivalence = _load_equivalence(here)
    equivalence._worker_warm_up()
    protocol.write('"ready"\n')
    protocol.flush()

    for line in sys.stdin:
        request_id, pred, gold = json.loads(line)
        try:
            equal = bool(equivalence._equivalent_normalized(pred, gold))
        except (Exception, RecursionError, MemoryError):  # noqa: BLE001 - unparsable means not equal
            equal = False
        protocol.write(json.dumps([request_id, equal]) + "\n")
        protocol.flush()


if __name__ == "__main__":
    main()
