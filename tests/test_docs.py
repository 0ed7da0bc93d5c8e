"""Every Python example in README.md and docs/*.md runs as written."""

import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(path, i, code) for path in FILES
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))]


@pytest.mark.parametrize(("path", "index", "code"), BLOCKS, ids=[f"{p.name}-{i}" for p, i, _ in BLOCKS])
def test_example_runs(path, index, code, tmp_path, capsys):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, f"{path.name}[{index}]", "exec"), {"__name__": "__docs__"})
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert "False" not in out  # examples print their checks
