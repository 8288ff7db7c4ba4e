"""The one-way package dependencies: jem <- model_store <- {training, service}."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jem", "model_store", "training", "service")


def _imports(package: str) -> dict[str, set[str]]:
    """Top-level names each module of `package` imports (relative imports stay in the package)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names.add(package if node.level else (node.module or "").split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def _offenders(package: str, forbidden: set[str]) -> dict[str, set[str]]:
    return {m: bad for m, names in _imports(package).items() if (bad := names & forbidden)}


def test_the_packages_exist() -> None:
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py").is_file(), package


def test_jem_imports_no_other_package() -> None:
    assert _offenders("jem", {"model_store", "training", "service"}) == {}


def test_jem_needs_only_torch_numpy_and_the_standard_library() -> None:
    allowed = {"jem", "torch", "numpy", *sys.stdlib_module_names}
    extra = {m: names - allowed for m, names in _imports("jem").items() if names - allowed}
    # jem/imaging.py turns a Pillow image into the model's pixels: the one conversion that
    # training and the service share (Pillow is a dependency of both, and of the serving image)
    assert extra == {"jem/imaging.py": {"PIL"}}


def test_model_store_imports_only_jem() -> None:
    assert _offenders("model_store", {"training", "service"}) == {}


@pytest.mark.parametrize(("package", "other"), [("service", "training"), ("training", "service")])
def test_service_and_training_never_import_each_other(package: str, other: str) -> None:
    assert _offenders(package, {other}) == {}
