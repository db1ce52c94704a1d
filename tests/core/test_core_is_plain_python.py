"""Core stays a library: no dagster, mlflow or great_expectations import anywhere in it."""

import ast
from pathlib import Path

import orchestrator.core

FORBIDDEN = {"dagster", "mlflow", "great_expectations"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_modules_import_no_orchestration_library():
    core = Path(orchestrator.core.__file__).parent
    offenders = {
        path.name: imported_roots(path) & FORBIDDEN
        for path in core.glob("*.py")
        if imported_roots(path) & FORBIDDEN
    }
    assert offenders == {}
    assert len(list(core.glob("*.py"))) >= 9  # the scan really saw the core modules
