"""The notebooks in ``notebooks/``: committed without outputs (fast), and each runs top to bottom in a fresh kernel of
this interpreter with ``RECSYS_NOTEBOOK_SMALL=1`` (slow; CI's ``pytest -m slow`` step)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
PARAMETER_LINE = 'SMALL = os.environ.get("RECSYS_NOTEBOOK_SMALL", "0") == "1"'
CELL_TIMEOUT_S = 600  # one cell; the whole set takes a few minutes on 2 cores with SMALL
KERNEL = "python3"  # the name every notebook's metadata asks for


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def test_the_notebooks_folder_has_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_clean(path: Path) -> None:
    """No outputs or execution counts in git; a Markdown cell first, then the SMALL parameter cell; public API only."""
    cells = _cells(path)
    assert len(cells) >= 2, f"{path.name}: expected a Markdown intro and a parameter cell"
    assert cells[0]["cell_type"] == "markdown", f"{path.name}: the first cell must be Markdown saying what it shows"
    assert cells[1]["cell_type"] == "code" and PARAMETER_LINE in _source(cells[1]), (
        f"{path.name}: the second cell must be the parameter cell with `{PARAMETER_LINE}`")
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        assert not cell.get("outputs"), f"{path.name}: cell {index} has stored outputs (clear them before committing)"
        assert cell.get("execution_count") is None, f"{path.name}: cell {index} has an execution count"
        for internal in ("recsys.benchmarks", "recsys.cli"):
            assert internal not in _source(cell), f"{path.name}: cell {index} uses {internal} (notebooks use the public API)"


@pytest.fixture
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``python3`` kernelspec that runs this interpreter, first on ``JUPYTER_PATH``: a user-level ``python3``
    kernelspec elsewhere (another Python, another venv) cannot take the notebooks' kernel."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (recsys tests)",
        "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("RECSYS_NOTEBOOK_SMALL", "1")  # the kernel inherits this process's environment
    monkeypatch.delenv("MPLBACKEND", raising=False)  # ipykernel's inline backend: figures render into the outputs
    return KERNEL


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, venv_kernel: str) -> None:
    nbformat = pytest.importorskip("nbformat", reason="needs the dev extra (nbformat, nbclient, ipykernel)")
    nbclient = pytest.importorskip("nbclient", reason="needs the dev extra (nbformat, nbclient, ipykernel)")
    pytest.importorskip("ipykernel", reason="needs the dev extra (nbformat, nbclient, ipykernel)")
    before = sorted(p.name for p in NOTEBOOKS_DIR.iterdir())
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=CELL_TIMEOUT_S, kernel_name=venv_kernel, allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},  # the notebooks' working directory, as in Jupyter
    )
    client.execute()  # raises CellExecutionError naming the cell and the traceback
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{path.name}: some cells did not run"
    assert sorted(p.name for p in NOTEBOOKS_DIR.iterdir()) == before, f"{path.name} wrote files into notebooks/"
    stderr = "".join(o.get("text", "") for c in code for o in c.outputs if o.get("name") == "stderr")
    assert "TqdmWarning" not in stderr and "IProgress not found" not in stderr, f"{path.name}: {stderr[:500]}"
