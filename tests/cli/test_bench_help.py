"""``recsys bench --help`` lists the benchmarks and exits 0; an unknown one still exits 2."""

from __future__ import annotations

import pytest

from recsys.cli.main import BENCHMARKS, main


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_bench_help_lists_benchmarks(flag, capsys):
    main(["bench", flag])  # returns, no SystemExit: exit status 0
    out = capsys.readouterr().out
    assert "usage: recsys bench NAME" in out and all(f"  {name} " in out for name in BENCHMARKS)


@pytest.mark.parametrize("args", [["bench"], ["bench", "nope"]])
def test_bench_without_a_known_name_exits_2(args, capsys):
    with pytest.raises(SystemExit) as error:
        main(args)
    assert error.value.code == 2 and "choose one of" in capsys.readouterr().err
