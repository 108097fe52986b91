"""Every command's --help: flags shown as flags, arguments as NAME in the usage line, choices and defaults named.

The commands are found by walking the typer app (sub-apps included), so a new command is checked too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.core import TyperArgument, TyperOption

from polymodal.cli import app
from polymodal.params.fusion import FUSION_PARAMS
from polymodal.params.tasks import TASK_PARAMS


def _commands(command: typer.core.TyperGroup | typer.core.TyperCommand, path: tuple[str, ...] = ()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _flat(text: str) -> str:
    """The help without the panels' borders and without any whitespace (rich wraps long help texts)."""
    return re.sub(r"[\s│╭╮╰╯─]+", "", text)


def test_every_command_is_found():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "fit", "predict", "serve", "report", "compare", "config", "config example", "cache clear"} <= names


@pytest.fixture
def help_of(cli):
    def get(path: tuple[str, ...]) -> str:
        r = cli(*path, "--help")
        assert r.exit_code == 0, r.stderr
        return r.stdout

    return get


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "polymodal" for p, _ in COMMANDS])
def test_help_shows_flags_as_flags_and_names_defaults(help_of, path, command):
    text = help_of(path)
    assert "<bool>" not in text, text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    for p in command.params:
        if isinstance(p, TyperArgument):
            assert p.name.upper() in usage.split(), usage  # RUN DATA, not {run} {data}
        if not isinstance(p, TyperOption) or p.is_flag or p.default is None or p.hidden:
            continue
        default = str(p.default.name if isinstance(p.default, Path) and p.default.parent == Path() else p.default)
        assert _flat(default) in _flat(text), (path, p.opts, default)


def test_fusion_and_problem_type_name_their_choices(help_of):
    fit = _flat(help_of(("fit",)))
    for name in (*FUSION_PARAMS.names(), *TASK_PARAMS.names()):
        assert name in fit, name
    for path in (("config", "example"), ("compare",)):
        text = _flat(help_of(path))
        assert all(name in text for name in FUSION_PARAMS.names()), path


def test_default_output_paths_say_they_are_in_the_current_folder(help_of):
    assert "./report.html,inthecurrentfolder" in _flat(help_of(("report",)))
    assert "./compare,inthecurrentfolder" in _flat(help_of(("compare",)))
