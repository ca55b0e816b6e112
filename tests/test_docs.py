"""The README's commands, as written: every shell block that needs neither the Hub nor `make` runs offline, in README
order, in one working folder beside a `shared/data` link (so `../shared/data` resolves as in a checkout); a
command followed by `# lm_eval: error: ...` comment lines must fail with that message. `make demo` / `make test` are
the set-up commands (CI runs the second; tests/test_demo.py runs the demo on tiny models), and the reproduction
section's Hub commands run with tiny models in tests/test_protocol.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import DATA_DIR, REPO, requires_data, requires_models

MODEL_ARG = re.compile(r"(?:pretrained|source|source_locked|target)=([^,\s]+)")


@dataclass
class Command:
    line: str  # continuation lines joined
    expected_error: str | None  # the `# lm_eval: error: ...` lines after it, joined


def blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)


def needs_hub(block: str) -> bool:
    """A model argument that is neither an embedded name nor a local path nor a shell variable: a Hub id."""
    values = MODEL_ARG.findall(block)
    return any("/" in v and not v.startswith(("/", ".", "~", "$")) for v in values)


def commands(block: str) -> list[Command]:
    out: list[Command] = []
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        line = line.strip()
        if line.startswith("# lm_eval: error:") and out:
            out[-1].expected_error = line[2:]
        elif line.startswith("# ") and out and out[-1].expected_error is not None:
            out[-1].expected_error += " " + line[2:]
        elif line and not line.startswith("#"):
            out.append(Command(line, None))
    return out


def runnable() -> list[str]:
    return [b for b in blocks() if not needs_hub(b) and not re.search(r"^make ", b, re.M)]


def test_every_readme_block_is_run_here_or_needs_the_hub_or_is_a_make_command():
    skipped = [b for b in blocks() if b not in runnable()]
    assert all(needs_hub(b) or b.startswith("make ") for b in skipped)
    assert any(b.startswith("make demo") for b in skipped) and len(runnable()) >= 10
    for block in runnable():  # cheap as written: every evaluation is --limit-sized
        for command in commands(block):
            if re.match(r"(\S+=\S+ )*(lm_eval|unlock-eval (sweep|demo))(?! --help)", command.line):
                assert re.search(r"--limit [1-8]\b", command.line), command.line


def normalise(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow
@requires_models
@requires_data
def test_the_readme_commands_run_as_written(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(DATA_DIR)  # `../shared/data` from the working folder
    work = tmp_path / "checkout"
    work.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("UNLOCK_EVAL_DATA_DIR")  # the README sets it where it needs it
    for block in runnable():
        for command in commands(block):
            assignment = re.fullmatch(r"(?:export )?(\w+)=(\$\(.*\)|\S+)", command.line.split("  #")[0].strip())
            if assignment:  # a variable for the next commands, evaluated by bash as the README's reader would
                name, value = assignment.groups()
                env[name] = subprocess.run(["bash", "-c", f'printf %s "{value}"'], cwd=work, env=env,
                                           capture_output=True, text=True, check=True).stdout  # fmt: skip
                continue
            t0 = time.perf_counter()
            proc = subprocess.run(["bash", "-c", command.line], cwd=work, env=env, capture_output=True, text=True,
                                  timeout=900)  # fmt: skip
            print(f"{time.perf_counter() - t0:5.0f} s  {command.line[:100]}")  # shown with -s or on failure
            if command.expected_error is None:
                assert proc.returncode == 0, f"{command.line}\n{proc.stderr[-3000:]}"
            else:
                assert proc.returncode != 0, command.line
                assert normalise(command.expected_error) in normalise(proc.stderr), proc.stderr[-3000:]
                assert "Traceback" not in proc.stderr
    written = ["results", "report.html", "table.csv", "sweeps/embedded/report.html", "diag.png"]
    for path in [*written, "sweeps/embedded_dev/report.html"]:
        assert (work / path).exists(), path
