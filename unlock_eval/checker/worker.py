"""The hard time limit: :class:`Checker` runs comparisons in a worker process that it kills on timeout.

Parsing and simplifying run in one worker process per :class:`Checker` (entry script:
``_worker_main.py`` beside this file), started once and reused; when a comparison runs past its limit
the worker is killed (``SIGKILL`` also stops a parse stuck in C code or deep recursion), the call
returns ``False`` with reason ``"timeout"``, and a fresh worker is started (a call made while a worker
is still starting -- the first one, or the one after a timeout -- first waits for it, about a second,
which is not counted against its limit). The worker also runs under an address-space limit
(:data:`WORKER_MEMORY_LIMIT_BYTES`). Also here: :class:`Verdict`, :data:`REASONS`, the limits, and the
module-level :func:`check` / :func:`is_equiv` / :func:`stats` on a shared default Checker.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from unlock_eval.checker.equivalence import normalize
from unlock_eval.checker.extract import _require_str

#: Why a :class:`Verdict` came out as it did.
REASONS = (
    "identical",  # equal after normalize(): decided without the worker
    "equivalent",  # math-verify/sympy judged them equal
    "different",  # judged different
    "no_answer",  # pred was None or empty
    "too_long",  # an answer longer than MAX_ANSWER_CHARS: not compared
    "timeout",  # the comparison ran past its time limit; the worker was killed
    "crashed",  # the worker died during the comparison (e.g. a C-level stack overflow)
)

DEFAULT_TIMEOUT = 5.0
#: Answers longer than this are not compared (no real final answer is this long).
MAX_ANSWER_CHARS = 100_000
#: Address-space limit for the worker process: a runaway computation fails with MemoryError here.
WORKER_MEMORY_LIMIT_BYTES = 4 << 30
#: How long the worker may take to import sympy/math-verify and warm up, before we give up loudly.
WORKER_STARTUP_TIMEOUT = 120.0
#: The worker's entry script, run by path (see its docstring for why).
_WORKER_SCRIPT = Path(__file__).with_name("_worker_main.py")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison: ``equal`` and the ``reason`` (one of :data:`REASONS`)."""

    equal: bool
    reason: str

    def __bool__(self) -> bool:
        return self.equal


class _Timeout(Exception):
    pass


class _WorkerDied(Exception):
    pass


def _validate_timeout(timeout: object, func: str) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{func}: timeout must be a positive number of seconds, got {type(timeout).__name__}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"{func}: timeout must be a positive, finite number of seconds, got {timeout!r}")
    return float(timeout)


_LIVE_CHECKERS: weakref.WeakSet[Checker] = weakref.WeakSet()


class Checker:
    """Answer equivalence with a hard time limit per call, backed by one persistent worker process.

    ``Checker(timeout=5.0)``; then :meth:`check` / :meth:`is_equiv`. ``shortcut=False`` sends every
    pair to the worker, even when the normalised strings are identical (tests and benchmarks use it to
    exercise the math-verify path on real answers). The worker starts on first use
    (about a second: imports plus a warm-up that is not counted against any call's limit) and is
    reused; after a timeout or crash it is killed and a new one is started at once. Thread-safe (one
    comparison at a time per Checker; use several Checkers to compare in parallel). Use as a context
    manager or call :meth:`close`; live workers are also stopped at interpreter exit.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, *, shortcut: bool = True) -> None:
        self.timeout = _validate_timeout(timeout, "Checker")
        if not isinstance(shortcut, bool):
            raise TypeError(f"Checker: shortcut must be True or False, got {shortcut!r}")
        self.shortcut = shortcut
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._proc_pid_owner: int | None = None
        self._stderr = None
        self._buf = b""
        self._ready = False
        self._next_id = 0
        self._stats = dict.fromkeys(("calls", "identical", "compared", "timeouts", "crashes", "worker_starts"), 0)
        _LIVE_CHECKERS.add(self)

    # -- public -------------------------------------------------------------------------------------

    def check(self, pred: str | None, gold: str, timeout: float | None = None) -> Verdict:
        """Judge ``pred`` against ``gold`` within ``timeout`` seconds (default: the Checker's)."""
        if pred is not None:
            _require_str(pred, "check", "pred (a str or None)")
        _require_str(gold, "check", "gold")
        limit = self.timeout if timeout is None else _validate_timeout(timeout, "check")
        if not gold.strip():
            raise ValueError("check: gold must be a non-empty answer string")
        with self._lock:
            self._stats["calls"] += 1
            if pred is None or not pred.strip():
                return Verdict(False, "no_answer")
            if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
                return Verdict(False, "too_long")
            pred_n, gold_n = normalize(pred), normalize(gold)
            if self.shortcut and pred_n and pred_n == gold_n:
                self._stats["identical"] += 1
                return Verdict(True, "identical")
            self._stats["compared"] += 1
            return self._compare_in_worker(pred_n, gold_n, limit)

    def is_equiv(self, pred: str | None, gold: str, timeout: float | None = None) -> bool:
        """``check(...).equal``."""
        return self.check(pred, gold, timeout).equal

    @property
    def stats(self) -> dict[str, int]:
        """Counters: calls, identical (decided without the worker), compared, timeouts, crashes,
        worker_starts."""
        with self._lock:
            return dict(self._stats)

    def start(self) -> None:
        """Start the worker now (otherwise it starts on the first comparison) and wait until ready."""
        with self._lock:
            self._ensure_worker()
            self._wait_ready()

    def close(self) -> None:
        """Stop the worker. The Checker can still be used; a new worker starts when needed."""
        with self._lock:
            self._kill_worker()

    def __del__(self) -> None:
        try:
            self._kill_worker()
        except Exception:  # noqa: BLE001 - interpreter shutdown: best effort
            pass

    def __enter__(self) -> Checker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- worker management --------------------------------------------------------------------------

    def _spawn(self) -> None:
        env = dict(os.environ, PYTHONHASHSEED="0", PYTHONUNBUFFERED="1")
        self._stderr = tempfile.TemporaryFile()
        die_with_parent = threading.current_thread() is threading.main_thread()
        self._proc = subprocess.Popen(
            [
                sys.executable,
                str(_WORKER_SCRIPT),
                str(WORKER_MEMORY_LIMIT_BYTES),
                str(os.getpid()) if die_with_parent else "0",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            close_fds=True,
        )
        self._proc_pid_owner = os.getpid()
        self._buf = b""
        self._ready = False
        self._stats["worker_starts"] += 1

    def _ensure_worker(self) -> None:
        if self._proc is not None and self._proc_pid_owner != os.getpid():
            # We are a forked child: that worker belongs to our parent. Forget it, start our own.
            self._proc, self._stderr = None, None
        if self._proc is None or self._proc.poll() is not None:
            self._kill_worker()
            self._spawn()

    def _kill_worker(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and self._proc_pid_owner == os.getpid():
            try:
                proc.kill()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._buf = b""
        self._ready = False

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-3000:]

    def _read_line(self, deadline: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise _WorkerDied
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _wait_ready(self) -> None:
        if self._ready:
            return
        try:
            line = self._read_line(time.monotonic() + WORKER_STARTUP_TIMEOUT)
        except (_Timeout, _WorkerDied) as err:
            detail = self._stderr_tail()
            self._kill_worker()
            what = (
                f"did not start within {WORKER_STARTUP_TIMEOUT:.0f} s"
                if isinstance(err, _Timeout)
                else "died on start-up"
            )
            raise RuntimeError(
                f"unlock_eval.checker: the comparison worker ({sys.executable} "
                f"{_WORKER_SCRIPT}) {what}; it needs sympy, math_verify "
                f"and latex2sympy2_extended importable. Worker stderr:\n{detail}"
            ) from None
        if line.strip() != b'"ready"':
            self._kill_worker()
            raise RuntimeError(f"unlock_eval.checker: unexpected greeting from the worker: {line[:200]!r}")
        self._ready = True

    def _compare_in_worker(self, pred: str, gold: str, limit: float) -> Verdict:
        self._ensure_worker()
        self._wait_ready()  # start-up is not counted against this call's limit
        assert self._proc is not None and self._proc.stdin is not None
        self._next_id += 1
        request_id = self._next_id
        deadline = time.monotonic() + limit
        try:
            self._proc.stdin.write((json.dumps([request_id, pred, gold]) + "\n").encode("utf-8"))
            self._proc.stdin.flush()
            while True:
                reply = json.loads(self._read_line(deadline))
                if reply[0] == request_id:
                    break
        except _Timeout:
            self._stats["timeouts"] += 1
            self._restart()
            return Verdict(False, "timeout")
        except (_WorkerDied, BrokenPipeError, OSError, ValueError):
            self._stats["crashes"] += 1
            self._restart()
            return Verdict(False, "crashed")
        if reply[1] is True:
            return Verdict(True, "equivalent")
        return Verdict(False, "different")

    def _restart(self) -> None:
        # Kill now and start the replacement right away, so its imports overlap with the caller's work.
        self._kill_worker()
        self._spawn()


def _close_all() -> None:
    for checker in list(_LIVE_CHECKERS):
        try:
            checker.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: best effort
            pass


atexit.register(_close_all)

_DEFAULT_CHECKER: Checker | None = None
_DEFAULT_LOCK = threading.Lock()


def _default_checker() -> Checker:
    global _DEFAULT_CHECKER
    with _DEFAULT_LOCK:
        if _DEFAULT_CHECKER is None:
            _DEFAULT_CHECKER = Checker(DEFAULT_TIMEOUT)
        return _DEFAULT_CHECKER


def check(pred: str | None, gold: str, timeout: float = DEFAULT_TIMEOUT) -> Verdict:
    """Judge ``pred`` against ``gold`` within ``timeout`` seconds, on the module's shared Checker."""
    return _default_checker().check(pred, gold, _validate_timeout(timeout, "check"))


def is_equiv(pred: str | None, gold: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """True when ``pred`` is mathematically equal to ``gold``; False when not, when ``pred`` is None,
    or when the comparison runs past ``timeout`` seconds (hard limit; see the module docstring)."""
    return _default_checker().check(pred, gold, _validate_timeout(timeout, "is_equiv")).equal


def stats() -> dict[str, int]:
    """Counters of the module's shared Checker (see :attr:`Checker.stats`)."""
    return _default_checker().stats
