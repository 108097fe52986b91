"""The package's architecture, checked: the import contract (layers, pyproject.toml's [tool.importlinter]) and the
Predictor facade's boundary (nothing below it reaches into it or imports it)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "polymodal"
API = PACKAGE / "api.py"
#: The modules that may import polymodal.api: the CLI and the package's lazy facade (api.py is the module itself).
API_IMPORTERS = {PACKAGE / "cli.py", PACKAGE / "__init__.py", API}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, tree: ast.AST) -> list[tuple[str, int]]:
    """Every module that ``path`` imports (absolute names; relative imports resolved; ``from X import y`` gives
    both X and X.y, since y may be a submodule), with the line, wherever the import is: top level, TYPE_CHECKING
    blocks and function bodies alike."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                head = package[: len(package) - (node.level - 1)]
                base = ".".join(head + ([node.module] if node.module else []))
            out.append((base, node.lineno))
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return out


def test_import_contract_is_kept() -> None:
    """`lint-imports` with the contract in pyproject.toml: imports go down the layers only (lazy and TYPE_CHECKING
    imports included), deployment and analysis apart, no torch/Lightning where they do not belong."""
    exe = Path(sys.executable).parent / ("lint-imports.exe" if os.name == "nt" else "lint-imports")
    assert exe.exists(), (
        f"{exe} not found: install the dev extras (pip install -e '.[dev]'), which include import-linter"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(
        [str(exe), "--no-cache", "pyproject.toml"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, f"the import contract is broken:\n{run.stdout}\n{run.stderr}"


def _predictor_private_names() -> set[str]:
    """The ``_``-prefixed, non-dunder names that class Predictor defines: methods, class attributes and the
    ``self._x`` attributes its methods set or read."""
    tree = ast.parse(API.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Predictor")
    names = set()
    for node in ast.walk(cls):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            names.add(node.attr)
    for node in cls.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {n for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))}


def test_no_module_uses_predictor_private_members() -> None:
    private = _predictor_private_names()
    assert private, "found no private members on Predictor: has api.py changed shape?"
    offences = []
    for path in _modules():
        if path == API:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in private
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                offences.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    assert not offences, (
        "modules use Predictor's private members (use the FittedPipeline's public methods "
        "instead):\n" + "\n".join(offences)
    )


def test_only_the_cli_and_the_facade_import_the_api() -> None:
    offences = []
    for path in _modules():
        if path in API_IMPORTERS:
            continue
        for name, line in _imported(path, ast.parse(path.read_text(encoding="utf-8"))):
            if name == "polymodal.api" or name.startswith("polymodal.api."):
                offences.append(f"{path.relative_to(ROOT)}:{line}: imports {name}")
    assert not offences, (
        "only cli.py and polymodal/__init__.py may import polymodal.api (lower layers take a "
        "FittedPipeline or a PipelineSource):\n" + "\n".join(offences)
    )


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from ..api import Predictor", "polymodal.api"),
        ("from .. import api", "polymodal.api"),
        ("import polymodal.api", "polymodal.api"),
    ],
)
def test_the_import_walk_resolves_relative_imports(source: str, expected: str) -> None:
    path = PACKAGE / "data" / "readers.py"
    assert expected in {name for name, _ in _imported(path, ast.parse(source))}
