"""README.md's snippets cannot rot (issue 25, acceptance 5).

Every ```python / ```bash / ```console block of README.md is one of:
  * run as written, on tiny generated tables, offline (the default);
  * checked, when the HTML comment ``<!-- check-snippet: reason -->`` stands right before it: each command line's
    sub-command must exist and each ``--option`` it uses must be an option of that sub-command (for reference
    lists of long runs and servers, which the CLI tests run one by one);
  * skipped, when ``<!-- skip-snippet: reason -->`` stands right before it; the reason is required.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
from conftest import REPO_ROOT

from polymodal.cli import app
from polymodal.datasets.synthetic import generate

README = REPO_ROOT / "README.md"
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"^<!--\s*(skip|check)-snippet:\s*(.*?)\s*-->$")


@dataclass
class Snippet:
    line: int
    lang: str
    code: str
    mark: str | None  # "skip" / "check" / None (run)
    reason: str


def snippets() -> list[Snippet]:
    lines = README.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = _MARK.match(before)
        if m.group(1) in ("python", "bash", "console"):
            code = "\n".join(lines[i + 1 : end])
            out.append(Snippet(i + 1, m.group(1), code, mark and mark.group(1), mark.group(2) if mark else ""))
        i = end + 1
    return out


def _id(s: Snippet) -> str:
    return f"README.md:{s.line}:{s.lang}"


SNIPPETS = snippets()
RUN = [s for s in SNIPPETS if s.mark is None]
CHECK = [s for s in SNIPPETS if s.mark == "check"]


def test_readme_has_snippets_and_every_skip_or_check_says_why():
    assert len(SNIPPETS) >= 4 and RUN, "README.md lost its snippets, or all of them are skipped"
    for s in SNIPPETS:
        if s.mark:
            assert len(s.reason) >= 10, f"README.md:{s.line}: a {s.mark}-snippet marker needs a reason"


def _table(folder: Path, n: int, seed: int) -> pd.DataFrame:
    """A small table with the README's column names: a review text, a number, a category, a label."""
    rng = np.random.default_rng(seed)
    good = rng.integers(0, 2, n).astype(bool)
    words = np.array(["great", "fine", "lovely"]), np.array(["awful", "broken", "poor"])
    return pd.DataFrame(
        {
            "review": [f"the item was {rng.choice(words[0] if g else words[1])} overall" for g in good],
            "price": rng.normal(10, 2, n).round(2),
            "colour": rng.choice(["red", "blue"], n),
            "label": np.where(good, "good", "bad"),
        }
    )


def _commands(code: str) -> list[list[str]]:
    """The command lines of a shell snippet, comments dropped, continuation lines (`#` only) skipped."""
    out = []
    for raw in code.splitlines():
        line = raw.split(" #")[0].strip()
        if line and not line.startswith("#"):
            out.append(shlex.split(line))
    return out


@pytest.mark.parametrize("snippet", [s for s in RUN if s.lang == "python"], ids=_id)
def test_python_snippet_runs(snippet, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    for name, n, seed in (("train", 60, 0), ("test", 30, 1), ("new", 10, 2)):
        _table(data, n, seed).to_csv(data / f"{name}.csv", index=False)
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet.code, f"README.md:{snippet.line}", "exec"), {"__name__": "readme_snippet"})
    assert (tmp_path / "runs" / "x" / "manifest.json").is_file()


# Slow: the README's shell snippets are full default fits (about 90 s on 2 shared cores for the image-only one).
@pytest.mark.slow
@pytest.mark.parametrize("snippet", [s for s in RUN if s.lang != "python"], ids=_id)
def test_shell_snippet_runs(snippet, tmp_path):
    # The README's shell snippets that run use the demo's data folder: a small copy of it, generated here.
    data = tmp_path / "polymodal-demo" / "data"
    generate(data, 60, seed=0, prefix="train_").to_csv(data / "train.csv", index=False)
    generate(data, 30, seed=1, prefix="test_").to_csv(data / "test.csv", index=False)
    for args in _commands(snippet.code):
        assert args[0] in (".venv/bin/polymodal", "polymodal"), f"README.md:{snippet.line}: cannot run {args}"
        r = subprocess.run(
            [sys.executable, "-m", "polymodal.cli", *args[1:]], cwd=tmp_path, capture_output=True, text=True
        )
        assert r.returncode == 0, f"README.md:{snippet.line}: {shlex.join(args)}\n{r.stderr[-3000:]}"


def _is_group(cmd: object) -> bool:
    return hasattr(cmd, "list_commands")  # typer's groups need not subclass the installed click's Group


def _command_of(args: list[str]) -> tuple[Any, list[str]]:
    cmd: Any = typer.main.get_command(app)
    rest = list(args)
    while _is_group(cmd) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(cmd.context_class(cmd), rest[0])
        if sub is None:
            break
        cmd, rest = sub, rest[1:]
    return cmd, rest


@pytest.mark.parametrize("snippet", CHECK, ids=_id)
def test_checked_snippet_names_real_commands_and_options(snippet):
    for args in _commands(snippet.code):
        assert args[0] == "polymodal", f"README.md:{snippet.line}: {args}"
        cmd, rest = _command_of(args[1:])
        assert not _is_group(cmd), f"README.md:{snippet.line}: no such command: {shlex.join(args)}"
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        tokens = [a.strip("[]") for a in rest]  # "[--out DIR]": an optional flag
        used = {a.split("=")[0] for a in tokens if a.startswith("-")}
        assert used <= known, f"README.md:{snippet.line}: {shlex.join(args)}: unknown {sorted(used - known)}"
