"""Every public name is exported and importable."""

from __future__ import annotations

import importlib

import jem

MODULES = [
    "backbones",
    "buffer",
    "chain_init",
    "metrics",
    "model",
    "ood",
    "preprocess",
    "sgld",
    "sgld_graph",
]


def test_package_all_names_exist() -> None:
    for name in jem.__all__:
        assert hasattr(jem, name), name
    assert len(set(jem.__all__)) == len(jem.__all__)


def test_module_all_names_are_reexported() -> None:
    for mod_name in MODULES:
        mod = importlib.import_module(f"jem.{mod_name}")
        for name in mod.__all__:
            assert getattr(mod, name) is getattr(jem, name), f"jem.{mod_name}.{name}"
