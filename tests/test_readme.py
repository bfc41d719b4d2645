"""The README's Python example runs as written (in a temporary directory) and prints what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "ndcg@10" in out and "BPRMF test" in out
    assert "rank" in out and "similar" in out
    assert (tmp_path / "outputs" / "readme-bpr" / "run.json").is_file()


def data_section() -> str:
    return README.read_text().split("## Data: every way to bring it in", 1)[1].split("\n## ", 1)[0]


def test_readme_data_commands_compose() -> None:
    """Every recsys-train command of the Data table composes (the configs and keys it names exist)."""
    import shlex

    from hydra import compose, initialize_config_dir

    from recsys.cli.config_dir import config_dir

    commands = re.findall(r"`(recsys-train [^`]+)`", data_section())
    assert len(commands) >= 8
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        for command in commands:
            cfg = compose(config_name="train", overrides=shlex.split(command)[1:])
            assert cfg.dataset._target_ in ("recsys.data.load_dataset", "recsys.data.load_ctr_files"), command


@pytest.mark.slow  # trains or starts processes (seconds): the slow step
def test_readme_ctr_files_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The Data section's Python: MovieLens written as a libFM triple, FM trained on it, the saved run scored again."""
    import recsys

    blocks = re.findall(r"```python\n(.*?)```", data_section(), flags=re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "FM test" in out and "logloss" in out
    assert recsys.evaluate_run("outputs/ml-ctr-fm").metrics == namespace["result"].test
    assert namespace["table"].num_interactions == 100_836
