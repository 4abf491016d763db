"""The README's Python snippet runs as written and its two set-up commands name real things."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_python_snippet_runs():
    text = README.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    stems = scope["stems"]
    assert stems.shape == (4, 1, 16000)


def test_setup_commands_point_at_real_files():
    text = README.read_text()
    assert "pip install torch==2.13.0" in text and "python -m pytest -q" in text
    example = re.search(r"rtsep file (\S+)", text).group(1)
    assert (README.parent / example).is_file()
    assert "python3 -m pytest -q" in (README.parent / ".ci" / "run").read_text()
