"""Tests and benchmarks share harness/ and import nothing of each other.

Why this test exists: code that both need (a private broker, the centre's ledger, the station
runner, the fault rigs) lives once in harness/; a test that imported a benchmark (or the other
way round) would tie a figure's code to a test's, and the two would drift apart again. Every
``import`` and ``from … import`` of every file is read from its syntax tree, so a mention in a
string or a comment (``python -m benchmarks`` run as a subprocess) is no import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Each folder, and the top-level packages its files must not import.
FORBIDDEN = {
    "tests": {"benchmarks"},
    "benchmarks": {"tests"},
    "harness": {"tests", "benchmarks"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every absolute import in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_check_sees_both_kinds_of_import(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text("import benchmarks.suite\nfrom tests.support import x\nfrom . import y\n")
    assert imported_packages(source) == {"benchmarks", "tests"}


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_folder_imports_none_of_the_others(folder: str) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    wrong = [
        f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}"
        for path in files
        if (bad := imported_packages(path) & FORBIDDEN[folder])
    ]
    assert not wrong, "\n".join(wrong)
