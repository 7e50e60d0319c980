"""The test tree stays as DEVELOPERS.md describes it: tests by area, and no test module
importing from another test module (what two share lives in a conftest or a support
module: tests/races.py, tests/factories.py, a folder's conftest.py, ...)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
AREAS = {"domain", "services", "api", "pages", "stream", "worker", "browser", "ops"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and any(p.startswith("test_") for p in parts[1:])


def test_no_test_module_imports_another():
    offenders = {
        str(path.relative_to(TESTS.parent)): sorted(
            n for n in imported_modules(path) if is_test_module(n)
        )
        for path in sorted(TESTS.rglob("test_*.py"))
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, (
        f"move what these import into a conftest.py or a support module of tests/: {offenders}"
    )


def test_the_check_sees_an_import_from_a_test_module(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "from tests.services.test_concurrency import run_rounds\n"
        "import tests.api.test_api_matrix\n"
        "from tests.races import run_together\n"
        "from tests import factories\n",
        encoding="utf-8",
    )
    found = {n for n in imported_modules(sample) if is_test_module(n)}
    assert found == {
        "tests.services.test_concurrency",
        "tests.services.test_concurrency.run_rounds",
        "tests.api.test_api_matrix",
    }


def test_every_test_module_is_in_an_area():
    loose = sorted(p.name for p in TESTS.glob("test_*.py"))
    assert not loose, f"put these in one of tests/{sorted(AREAS)}: {loose}"
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= AREAS, f"a folder DEVELOPERS.md does not name: {sorted(folders - AREAS)}"
