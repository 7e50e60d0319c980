"""The layout holds (docs/design.md, "Layout"): the services import neither the tasks that
call them nor the interfaces above them, and no module grows past what a reader can hold.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "scheduling"
MAX_LINES = 600
# Over the limit today, with the reason. The test fails as soon as one is back under, so
# an entry cannot outlive its reason: split the module, then delete its line here.
KNOWN_LONG: set[str] = set()


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_importing_the_services_does_not_import_the_tasks():
    """The cycle services -> background -> tasks -> services is gone: Django set up
    without the app config's registering import, a service module (and background.py,
    which enqueues by name) leave scheduling.tasks unimported."""
    found = _run(
        "import sys\n"
        "from scheduling.apps import SchedulingConfig\n"
        "SchedulingConfig.ready = lambda self: None\n"
        "import django\n"
        "django.setup()\n"
        "import scheduling.services.appointments, scheduling.services.dispatch\n"
        "import scheduling.services.notifications.sweeps, scheduling.background\n"
        "print(sorted(m for m in sys.modules if m == 'scheduling.tasks'))\n"
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]", found.stdout


def test_the_app_config_registers_the_tasks_by_name():
    """...and a process set up the ordinary way has every task the services name."""
    found = _run(
        "import django\n"
        "django.setup()\n"
        "from config.celery import app\n"
        "from scheduling import background\n"
        "print(all(n in app.tasks for n in (background.DISPATCH, background.DELIVER)))\n"
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "True", found.stdout


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_no_module_is_over_600_lines():
    lines = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in _modules()}
    long = {path: n for path, n in lines.items() if n > MAX_LINES}
    unexpected = {path: n for path, n in long.items() if path not in KNOWN_LONG}
    assert not unexpected, f"split these by what they hold (docs/design.md): {unexpected}"
    settled = sorted(KNOWN_LONG - set(long))
    assert not settled, f"within {MAX_LINES} lines now: take them out of KNOWN_LONG: {settled}"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_services_and_selectors_never_import_the_interfaces():
    """Writes and reads sit below the API, the pages, the admin and the tasks; so does
    background.py, which the services call to enqueue (by name). Function-level imports
    count too: a lazy import of the tasks was how the cycle used to hide."""
    above = ("scheduling.api", "scheduling.views", "scheduling.admin", "scheduling.tasks")
    paths = [*(PACKAGE / "services").rglob("*.py"), *(PACKAGE / "selectors").rglob("*.py")]
    found = {}
    for path in sorted([*paths, PACKAGE / "background.py"]):
        bad = {n for n in _imports(path) if n.startswith(above)}
        if bad:
            found[str(path.relative_to(ROOT))] = sorted(bad)
    assert not found, found


def test_the_guards_see_what_they_check():
    """The two checks above read real files: the package is where they look, and a
    service that imported the API would be caught by the same parsing."""
    assert len(_modules()) > 50
    assert (PACKAGE / "services" / "appointments.py") in _modules()
    assert "scheduling.api.views" in _imports(PACKAGE / "urls.py") | {
        n for p in (PACKAGE / "api").glob("urls.py") for n in _imports(p)
    }
