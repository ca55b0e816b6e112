"""The docs' commands and links. Shell blocks whose fence says ```bash test (README.md and docs/*.md) run as
written, offline, in page order (PAGES), in one working folder beside a `shared/data` link (so `../shared/data`
resolves as in a checkout); a plain ```bash block is shown, never run. A command followed by `# lm_eval: error: ...`
comment lines must fail with that message; `NAME=value` / `export NAME=value` lines set variables for the commands
after them. The reproduction page's Hub commands run with tiny models in tests/test_protocol.py, the argument tables
are checked in tests/test_structure.py."""

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

# the order the marked blocks run in: later pages use what earlier ones wrote (results/ for the reports)
PAGES = [
    "README.md",
    "docs/README.md",
    "docs/getting-started.md",
    "docs/unlock.md",
    "docs/backends.md",
    "docs/weight-transfer.md",
    "docs/logit-transfer.md",
    "docs/model-arguments.md",
    "docs/cli.md",
    "docs/results-schema.md",
    "docs/reports.md",
    "docs/sweeps.md",
    "docs/diagnostics.md",
    "docs/packs.md",
    "docs/tasks.md",
    "docs/reproducing.md",
    "docs/python-api.md",
    "docs/benchmarks.md",
    "docs/footguns.md",
    "docs/maintaining.md",
]
MARKED = re.compile(r"^```bash test\n(.*?)^```", re.S | re.M)
MODEL_ARG = re.compile(r"(?:pretrained|source|source_locked|target)=([^,\s]+)")
ERROR_LINE = re.compile(r"# ((?:lm_eval|unlock-eval \w+): error:.*)")
EVALUATES = re.compile(r"(\S+=\S+ )*(lm_eval|unlock-eval (run|sweep|demo))(?! --help)\b")


@dataclass
class Command:
    line: str  # continuation lines joined
    expected_error: str | None  # the `# lm_eval: error: ...` lines after it, joined


def marked_blocks() -> list[tuple[str, str]]:
    """(page, block) for every ```bash test block, in PAGES order."""
    return [(page, block) for page in PAGES for block in MARKED.findall((REPO / page).read_text(encoding="utf-8"))]


def needs_hub(block: str) -> bool:
    """A model argument that is neither an embedded name nor a local path nor a shell variable: a Hub id."""
    return any("/" in v and not v.startswith(("/", ".", "~", "$")) for v in MODEL_ARG.findall(block))


def commands(block: str) -> list[Command]:
    out: list[Command] = []
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        line = line.strip()
        if ERROR_LINE.match(line) and out:
            out[-1].expected_error = line[2:]
        elif line.startswith("# ") and out and out[-1].expected_error is not None:
            out[-1].expected_error += " " + line[2:]
        elif line and not line.startswith("#"):
            out.append(Command(line, None))
    return out


def test_every_page_is_in_the_run_order():
    assert sorted(PAGES[1:]) == sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))


def test_marked_blocks_are_offline_small_and_cover_each_command_kind():
    lines = [c.line for _, block in marked_blocks() for c in commands(block)]
    for page, block in marked_blocks():
        assert not needs_hub(block), (page, block)
        assert not re.search(r"^\s*make\b", block, re.M), (page, block)
        for command in commands(block):  # cheap as written: every evaluation is --limit-sized, short answers
            if EVALUATES.match(command.line):
                assert re.search(r"--limit [1-4]\b", command.line), (page, command.line)
                if command.expected_error is None:
                    assert re.search(r"max_gen_toks=([1-9]|1[0-9]|2[0-9]|3[0-2])\b", command.line), command.line
    for kind in (
        r"lm_eval --model unlock ",
        r"lm_eval --model weight_transfer ",
        r"lm_eval --model logit_transfer ",
        r"lm_eval --model hf ",
        r"unlock-eval report ",
        r"unlock-eval behaviour ",
        r"unlock-eval sweep ",
        r"unlock-eval diagnose ",
        r"unlock-eval args ",
        r"unlock-eval cache list",
        r"unlock-eval pack ",
    ):
        assert any(line.startswith(kind) for line in lines), kind
    assert len(lines) <= 24, "keep the marked set small: each lm_eval process costs ~10 s of start-up"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation (backticks, parentheses, ...) dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_every_relative_link_resolves():
    broken = []
    for page in ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]:
        source = REPO / page
        text = re.sub(r"^```.*?^```", "", source.read_text(encoding="utf-8"), flags=re.S | re.M)
        for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            path, _, anchor = target.partition("#")
            resolved = (source.parent / path).resolve() if path else source
            if not resolved.exists():
                broken.append(f"{page}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{page}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def normalise(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow
@requires_models
@requires_data
def test_the_marked_commands_run_as_written(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(DATA_DIR)  # `../shared/data` from the working folder
    work = tmp_path / "checkout"
    work.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("UNLOCK_EVAL_DATA_DIR")  # the docs set it where they need it
    start = time.perf_counter()
    for page, block in marked_blocks():
        for command in commands(block):
            assignment = re.fullmatch(r"(?:export )?(\w+)=(\$\(.*\)|\S+)", command.line.split("  #")[0].strip())
            if assignment:  # a variable for the next commands, evaluated by bash as the reader's shell would
                name, value = assignment.groups()
                env[name] = subprocess.run(["bash", "-c", f'printf %s "{value}"'], cwd=work, env=env,
                                           capture_output=True, text=True, check=True).stdout  # fmt: skip
                continue
            t0 = time.perf_counter()
            proc = subprocess.run(["bash", "-c", command.line], cwd=work, env=env, capture_output=True, text=True,
                                  timeout=600)  # fmt: skip
            print(f"{time.perf_counter() - t0:5.0f} s  {page}: {command.line[:90]}")  # shown with -s or on failure
            if command.expected_error is None:
                assert proc.returncode == 0, f"{page}: {command.line}\n{proc.stderr[-3000:]}"
            else:
                assert proc.returncode != 0, command.line
                assert normalise(command.expected_error) in normalise(proc.stderr), proc.stderr[-3000:]
                assert "Traceback" not in proc.stderr
    print(f"{time.perf_counter() - start:5.0f} s  in all")
    for path in ["results", "report.html", "sweeps/embedded/report.html", "diag.png"]:
        assert (work / path).exists(), path
