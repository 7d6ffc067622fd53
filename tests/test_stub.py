"""The hand-written stub edgellm_ext/_core.pyi must list exactly the compiled module's public names."""

from __future__ import annotations

import ast
from pathlib import Path

import edgellm_ext
from edgellm_ext import _core


def _stub_names() -> set[str]:
    stub = Path(edgellm_ext.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return {n for n in names if not n.startswith("_")}


def test_stub_matches_module() -> None:
    module_names = {n for n in dir(_core) if not n.startswith("_")}
    stub_names = _stub_names()
    assert stub_names - module_names == set(), "in _core.pyi but not in the module"
    assert module_names - stub_names == set(), "in the module but not in _core.pyi"


def test_py_typed_shipped() -> None:
    assert Path(edgellm_ext.__file__).with_name("py.typed").exists()


def test_public_api() -> None:
    for name in edgellm_ext.__all__:
        assert hasattr(edgellm_ext, name), name
