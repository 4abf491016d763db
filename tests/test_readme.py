"""The README is a user document whose snippet runs and whose set-up commands match CI."""

import re
import shlex
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"


def blocks(lang: str) -> list[str]:
    """The README's fenced code blocks in `lang`, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), re.S | re.M)


def setup_commands() -> tuple[str, str]:
    """The two set-up commands: the first two bash blocks (install + example, tests)."""
    bash = blocks("bash")
    assert len(bash) >= 2, "README lacks its two set-up commands"
    return bash[0].strip(), bash[1].strip()


def apt_packages(text: str) -> set[str]:
    """Package names after `apt-get install`, options dropped."""
    found: set[str] = set()
    for m in re.finditer(r"apt-get install ([^&;|>\n]*)", text):
        found |= {w for w in shlex.split(m.group(1)) if not w.startswith("-")}
    return found


def test_python_snippet_runs():
    python = blocks("python")
    assert len(python) == 1, "the README should hold exactly one Python snippet, the tested one"
    scope: dict = {}
    exec(compile(python[0], "README.md", "exec"), scope)
    stems, mix, sep = scope["stems"], scope["mix"], scope["sep"]
    assert stems.shape == (len(sep.sources), *mix.shape) == (4, 1, 16000)
    np.testing.assert_allclose(stems.sum(axis=0), mix, atol=1e-4)


def test_setup_commands_match_ci():
    install, tests = setup_commands()
    for cmd in (install, tests):
        assert "\n" not in cmd, "each set-up command is one copy-pasteable line"
        subprocess.run(["bash", "-n", "-c", cmd], check=True)  # valid shell
        # Root has no sudo in a container: sudo only through a variable that stays empty for root.
        assert not re.search(r"(^|[;&|(]\s*)sudo\b", cmd), f"bare sudo in: {cmd}"
        assert '[ "$(id -u)" = 0 ] || S=sudo' in cmd
        # The CPU torch wheel goes in before the project, so the project's torch range pulls no other build.
        assert cmd.index("pip install torch==2.13.0") < cmd.index("pip install -e")
    assert install.endswith("rtsep file examples/music4-mix.wav -o separated")
    assert (ROOT / "examples" / "music4-mix.wav").is_file()
    ci = CI.read_text()
    ci_test = re.search(r"^# README test command:\n(.+)$", ci, re.M).group(1).strip()
    assert tests.endswith(ci_test), f"the README's test command should end with CI's {ci_test!r}"
    # Every check CI runs after installing the project (lint, tests) is in the README's command, in CI's order.
    after = ci.split('-e ".[test]"', 1)[1].splitlines()[1:]
    checks = [line.split("#", 1)[0].strip() for line in after if line.split("#", 1)[0].strip()]
    assert checks and checks[-1] == ci_test
    at = 0
    for check in checks:
        assert check in tests[at:], f"the README's test command lacks CI's {check!r}"
        at = tests.index(check, at) + len(check)
    assert 'pip install -e ".[test]"' in tests and '-e ".[test]"' in ci
    assert apt_packages(ci) <= apt_packages(tests), "the test command installs less than CI does"
    assert "torch==2.13.0" in ci


def test_readme_is_a_user_document():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert "runs/" not in text, "runs/ is a lab folder nobody else has"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to missing {target}"
