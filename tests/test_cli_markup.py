"""The CLI prints user text (column names, paths, error messages) as it is: rich must not read '[x]' as markup."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture
def bracket_table(tmp_path) -> Path:
    """Columns whose names look like rich markup tags, in a folder whose name does too."""
    folder = tmp_path / "runs" / "[a]"
    folder.mkdir(parents=True)
    path = folder / "table.csv"
    pd.DataFrame(
        {
            "a": [1, 2, 3, 4],
            "[weird]": ["x", "y", "x", "y"],
            "score[0]": [0.5, 0.7, 0.1, 0.3],
            "[bold]b[/bold]": [1.0, 2.0, 3.0, 4.0],
        }
    ).to_csv(path, index=False)
    return path


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_error_message_keeps_bracketed_names(cli, bracket_table):
    r = cli("validate", bracket_table, "--label", "[nope]", "--quiet")
    assert r.exit_code == 2
    message = _flat(r.stderr)
    assert "error:" in message
    for name in ("'[nope]'", "[weird]", "score[0]", "[bold]b[/bold]"):
        assert name in message, (name, message)


def test_error_message_keeps_bracketed_path(cli, tmp_path):
    missing = tmp_path / "runs" / "[a]" / "absent.csv"
    r = cli("info", missing, "--label", "y", "--quiet")
    assert r.exit_code == 2
    assert "[a]" in r.stderr.replace("\n", ""), r.stderr


def test_table_cells_keep_bracketed_names(cli, bracket_table):
    r = cli("info", bracket_table, "--label", "[weird]", "--quiet")
    assert r.exit_code == 0, r.stderr
    out = _flat(r.stdout)
    for name in ("[weird]", "score[0]", "[bold]b[/bold]"):
        assert name in out, (name, out)
