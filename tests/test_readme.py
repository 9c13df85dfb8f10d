import contextlib
import io
import re

from conftest import ROOT


def python_blocks():
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_python_example_runs_as_written():
    blocks = python_blocks()
    assert blocks, "README has no python example"
    for code in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {})
        # Every `print(...)  # expected` comment in the example must be what it printed.
        expected = [c.strip() for c in re.findall(r"print\(.*\)[ \t]+#[ \t]*(.*)", code)]
        assert out.getvalue().splitlines() == expected


def test_readme_names_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
