"""The layout's promises: the checkout is the package, and dependencies point one way (engine <- harness <-
experiments <- cli; reports read result folders and never run anything)."""

import ast
from pathlib import Path

import pytest

import unlock_eval

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "unlock_eval"

# layer -> the unlock_eval subpackages its modules must never import
FORBIDDEN = {
    "engine": ("model_adapters", "experiments", "reports", "cli", "tasks"),
    "model_adapters": ("experiments", "reports", "cli"),
    "reports": ("model_adapters", "experiments", "cli"),
    "experiments": ("cli",),
}


def layer_of(path: Path) -> str | None:
    """Which layer a source file belongs to (top-level folders count under their package name)."""
    first = path.relative_to(REPO).parts[0]
    if first in ("model_adapters", "reports"):
        return first
    if first != "unlock_eval":
        return None
    second = path.relative_to(PACKAGE).parts[0]
    return second if second in ("experiments", "cli") else "engine"


def imported_modules(path: Path) -> set[str]:
    """Every absolute module an import statement in the file names (at any depth: lazy imports count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def source_files() -> list[Path]:
    """The package's modules where they live in the checkout (the links in unlock_eval/ are not walked twice)."""
    files = [p for p in PACKAGE.rglob("*.py") if not any(part in ("tasks", "model_adapters", "reports")
                                                         for part in p.relative_to(PACKAGE).parts)]  # fmt: skip
    return files + sorted((REPO / "model_adapters").glob("*.py")) + sorted((REPO / "reports").glob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_dependencies_point_one_way(layer):
    bad = []
    for path in source_files():
        if layer_of(path) != layer:
            continue
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] == "unlock_eval" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_checker_flags_a_wrong_way_import(tmp_path):
    """The check above can fail: an engine module importing a report is caught."""
    module = PACKAGE / "methods" / "unlock" / "steer.py"
    assert layer_of(module) == "engine"
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from unlock_eval.reports.table import build_table\n")
    assert "unlock_eval.reports.table" in imported_modules(probe)


def test_the_checkout_is_the_package():
    """Imports resolve to this checkout (editable install or the working directory), with the top-level folders
    reached through the package's links: no reinstall after an edit."""
    assert Path(unlock_eval.__file__).resolve().parent == PACKAGE
    for name in ("tasks", "model_adapters", "reports"):
        link = PACKAGE / name
        assert link.is_symlink() and link.resolve() == REPO / name, name
    import unlock_eval.model_adapters.unlock as adapter
    import unlock_eval.reports.table as table

    assert Path(adapter.__file__).resolve() == REPO / "model_adapters" / "unlock.py"
    assert Path(table.__file__).resolve() == REPO / "reports" / "table.py"
