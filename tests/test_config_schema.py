"""`polymodal config schema` validates every config in the docs and examples; `config example` is a valid config."""

from __future__ import annotations

import ast
import json
import re

import pytest
import yaml
from conftest import REPO_ROOT, TINY_CONFIG

from polymodal.components import check_config, encoder_params, fusion_params
from polymodal.config import PolymodalConfig
from polymodal.registry import ENCODERS, FUSIONS

jsonschema = pytest.importorskip("jsonschema")
SECTIONS = set(PolymodalConfig.model_fields)


@pytest.fixture(scope="module")
def validator(cli_module):
    r = cli_module("config", "schema")
    assert r.exit_code == 0, r.stderr
    schema = json.loads(r.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def cli_module():
    from typer.testing import CliRunner

    from polymodal.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _errors(validator, cfg: dict) -> list[str]:
    return [e.message for e in validator.iter_errors(cfg)]


def doc_configs() -> list[tuple[str, dict]]:
    """The YAML blocks of the docs whose top-level keys are all config sections."""
    out = []
    for md in sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")]):
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", md.read_text(encoding="utf-8"), re.S)):
            value = yaml.safe_load(block)
            if isinstance(value, dict) and value and set(value) <= SECTIONS:
                out.append((f"{md.name}#{i}", value))
    return out


def _literal(node: ast.AST):
    """A dict/list/constant node as a value. A leaf that is an expression (a variable, ``a.epochs``) stands for a
    count when its source says so (epochs, rows, size) and for a string (a model folder) otherwise."""
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            if isinstance(k, ast.Constant):
                out[k.value] = _literal(v)
        return out
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    try:
        return ast.literal_eval(node)
    except ValueError:
        source = ast.unparse(node)
        return 1 if re.search(r"epoch|rows|size|seed", source) else source


def example_configs() -> list[tuple[str, dict]]:
    """Config dicts written in the example scripts and the recipes (variables left out)."""
    out = []
    files = sorted((REPO_ROOT / "examples").glob("*.py")) + [REPO_ROOT / "src/polymodal/recipes.py"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Dict)
                and node.keys
                and all(isinstance(k, ast.Constant) and k.value in SECTIONS for k in node.keys)
            ):
                out.append((f"{path.name}:{node.lineno}", _literal(node)))
    return out


def test_there_are_configs_to_check():
    assert len(doc_configs()) >= 4 and len(example_configs()) >= 4


@pytest.mark.parametrize("where, cfg", doc_configs() + example_configs() + [("TINY_CONFIG", TINY_CONFIG)])
def test_docs_and_examples_validate(validator, where, cfg):
    assert _errors(validator, cfg) == [], where
    if "fusion" not in cfg or "name" in cfg["fusion"]:  # and the library agrees
        check_config(PolymodalConfig.from_any(cfg))


@pytest.mark.parametrize(
    "bad",
    [
        {"encoders": {"image": {"name": "image_cnn", "widht": 8}}},
        {"encoders": {"image": {"name": "text_rnn"}}},  # a text encoder for the image kind
        {"encoders": {"review": {"name": "nope"}}},
        {"fusion": {"name": "late", "combin": "vote"}},
        {"fusion": {"name": "concat", "heads": 2}},
        {"training": {"learnin_rate": 0.1}},
    ],
)
def test_schema_rejects_what_check_config_rejects(validator, bad):
    assert _errors(validator, bad)


def test_schema_accepts_column_keys_and_defaults(validator):
    assert (
        _errors(validator, {"encoders": {"review": {"name": "text_transformer", "layers": 1}}, "fusion": {"dim": 64}})
        == []
    )


@pytest.mark.parametrize("fusion", ["concat", "late", "film"])
def test_config_example_is_a_valid_commented_config(cli_module, validator, fusion):
    r = cli_module("config", "example", "--fusion", fusion)
    assert r.exit_code == 0, r.stderr
    assert "# width of the fused representation" in r.stdout and "# peak learning rate" in r.stdout
    value = yaml.safe_load(r.stdout)
    assert value["fusion"]["name"] == fusion and _errors(validator, value) == []
    cfg = PolymodalConfig.from_any(value)
    check_config(cfg)
    # every value is the default
    default = PolymodalConfig.from_any({"fusion": {"name": fusion}})
    assert cfg.model_dump(exclude={"encoders", "fusion"}) == default.model_dump(exclude={"encoders", "fusion"})
    for key, choice in cfg.encoders.items():
        assert choice.name == default.encoders[key].name
        assert encoder_params(key, choice) == ENCODERS.get(choice.name).Config()
    assert fusion_params(cfg.fusion) == FUSIONS.get(fusion).Params()
    assert (cfg.fusion.dim, cfg.fusion.dropout) == (default.fusion.dim, default.fusion.dropout)


def test_config_example_unknown_fusion_exits_2(cli_module):
    r = cli_module("config", "example", "--fusion", "conact")
    assert r.exit_code == 2 and "did you mean 'concat'?" in r.stderr
