"""Every command's --help renders: help strings are rich markup, so a stray `[...]` breaks them."""

import pytest
from typer.testing import CliRunner

from rtsep.cli import app

COMMANDS = [[], ["data", "toy4"], ["data", "music4"], ["train", "prior"], ["train", "encoder"], ["eval", "priors"],
            ["eval", "separate"], ["file"], ["models"], ["export"], ["bench"], ["devices"], ["live"],
            ["train", "chain"], ["adapt"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "rtsep")
def test_help_renders(cmd):
    r = CliRunner().invoke(app, [*cmd, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage" in r.output
