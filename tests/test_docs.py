"""The README states what the code does: its settings table is the code's own."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from inkq.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_configuration_table_matches_the_settings():
    table = CliRunner().invoke(cli, ["config"]).output.strip()
    assert table in README.read_text(), "README's configuration table is stale: paste `inkq config`"


def test_every_command_help_shows_an_example():
    runner = CliRunner()
    names = [n for n in cli.commands if n != "keys"] + ["keys add", "keys list", "keys revoke"]
    for name in names:
        out = runner.invoke(cli, [*name.split(), "--help"]).output
        assert "Example" in out, name
