"""The README's Python quick start runs as written."""

import pathlib
import re


def test_readme_python_example_runs(capsys):
    readme = pathlib.Path(__file__).resolve().parents[2] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    assert blocks, "the README has no Python example"
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out.splitlines()
    assert out == [str([x * x for x in range(10)]), "1024", str([0, 1, 4, 9, 16])]
