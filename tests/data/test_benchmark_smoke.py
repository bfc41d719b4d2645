"""The data-pipeline benchmark runs end to end on a tiny table (full size is run by hand)."""

from __future__ import annotations

import pytest

from recsys.benchmarks.data_pipeline import main


@pytest.mark.slow
def test_tiny_run(capsys):
    assert main(["--rows", "10000", "--users", "300", "--items", "500", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "| recsys (polars) |" in out and "| pandas" in out and "splits agree: True" in out
