"""text/ is a leaf beside models/: it imports no layer above it, and nothing below it imports text."""

import ast
from pathlib import Path

import pytest

import recsys

ROOT = Path(recsys.__file__).parent
ABOVE_TEXT = ("recsys.models", "recsys.training", "recsys.evaluation", "recsys.estimators", "recsys.benchmarks", "recsys.cli")


def _imports(folder: Path) -> list[tuple[str, str]]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):  # lazy (function-level) imports count too
            if isinstance(node, ast.ImportFrom) and node.module:
                found.append((path.name, node.module))
            elif isinstance(node, ast.Import):
                found.extend((path.name, alias.name) for alias in node.names)
    return found


def test_text_imports_no_layer_above_it():
    bad = [(f, m) for f, m in _imports(ROOT / "text") if m == "recsys" or m.startswith(ABOVE_TEXT)]
    assert bad == []


@pytest.mark.parametrize("layer", ["data", "embeddings", "nn", "models"])
def test_lower_layers_and_models_do_not_import_text(layer):
    assert [(f, m) for f, m in _imports(ROOT / layer) if m.startswith("recsys.text")] == []
