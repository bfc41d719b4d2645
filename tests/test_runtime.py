"""What every layer shares: the progress bar that never warns in Jupyter."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import tqdm.auto
import tqdm.std

from recsys import runtime


@pytest.mark.parametrize("widgets", [False, True])
def test_progress_bar_uses_widgets_only_when_installed(widgets: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (real("tqdm") if widgets else None) if name == "ipywidgets" else real(name, *a))
    runtime._bar_class.cache_clear()
    try:
        assert runtime._bar_class() is (tqdm.auto.tqdm if widgets else tqdm.std.tqdm)
        assert sum(runtime.progress_bar(range(4), disable=True)) == 6
    finally:
        runtime._bar_class.cache_clear()


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_no_tqdm_warning_inside_a_kernel_without_ipywidgets() -> None:
    """What tqdm.auto does in a Jupyter kernel without ipywidgets: warn. Ours stays quiet."""
    pytest.importorskip("ipykernel", reason="needs the dev extra (ipykernel)")
    if importlib.util.find_spec("ipywidgets") is not None:
        pytest.skip("ipywidgets is installed here: the widget bar is used and nothing warns")
    code = (
        "import warnings\n"
        "import ipykernel.zmqshell  # what tqdm.auto looks for to tell a Jupyter kernel\n"
        "with warnings.catch_warnings(record=True) as ours:\n"
        "    warnings.simplefilter('always')\n"
        "    from recsys.runtime import progress_bar\n"
        "    list(progress_bar(range(2)))\n"
        "with warnings.catch_warnings(record=True) as auto:\n"
        "    warnings.simplefilter('always')\n"
        "    import tqdm.auto\n"
        "print('ours:', [type(w.message).__name__ for w in ours], 'auto:', [type(w.message).__name__ for w in auto])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ours: [] auto: ['TqdmWarning']" in out.stdout, out.stdout  # the control: tqdm.auto itself warns
