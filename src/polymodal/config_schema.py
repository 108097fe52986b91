"""The config's JSON Schema and a commented example config, both generated from the registries.

``polymodal config schema`` prints :func:`json_schema` (editors validate YAML configs with it: each ``encoders``
entry is a ``oneOf`` over the registered encoders told apart by ``name``, each with that encoder's parameters; the
fusion likewise over the fusions). ``polymodal config example`` prints :func:`example_yaml`. A new encoder or fusion
appears in both with no edit here. Both read the parameter registries of :mod:`polymodal.params` (each registered
class's docstring is its component's description): no torch is imported.
"""

from __future__ import annotations

import inspect
import json
import types
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, create_model

from .components import FUSION_COMMON
from .config import ENCODER_KINDS, FusionConfig, PolymodalConfig
from .params import ENCODER_PARAMS, FUSION_PARAMS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_FUSION = FusionConfig.model_fields["name"].default


# ------------------------------------------------------------------------------------------------ JSON Schema
def encoder_model(name: str) -> type[BaseModel]:
    """``encoders.<key>`` when it chooses encoder ``name``: its ``Config`` plus ``name: <that name>``."""
    cls = ENCODER_PARAMS.get(name)
    # a Literal of a runtime value is a valid pydantic field type, though not a static type
    field: Any = (Literal[name], Field(..., description="the encoder"))
    return create_model(f"encoder_{name}", __base__=cls, __doc__=_doc(cls), name=field)


def fusion_model(name: str) -> type[BaseModel]:
    """The ``fusion`` section when it chooses fusion ``name``: the common keys plus that fusion's ``Params``."""
    cls = FUSION_PARAMS.get(name)
    common: dict[str, Any] = {
        k: (f.annotation, f) for k, f in FusionConfig.model_fields.items() if k in FUSION_COMMON and k != "name"
    }
    # The default fusion may leave its name out (as the config does); every other one must be named.
    name_field = Field(name if name == DEFAULT_FUSION else ..., description="the fusion method")
    field: Any = (Literal[name], name_field)  # (as in encoder_model)
    return create_model(f"fusion_{name}", __base__=cls, __doc__=_doc(cls), name=field, **common)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file, with the registered encoders and fusions."""
    root = PolymodalConfig.model_json_schema()
    defs: dict[str, Any] = root.setdefault("$defs", {})

    def ref(model: type[BaseModel]) -> dict[str, str]:
        sub = model.model_json_schema()
        defs.update(sub.pop("$defs", {}))
        defs[model.__name__] = sub
        return {"$ref": f"#/$defs/{model.__name__}"}

    encoders = {n: ref(encoder_model(n)) for n in ENCODER_PARAMS.names()}
    by_kind = {
        k: [encoders[n] for n in ENCODER_PARAMS.names() if k in ENCODER_PARAMS.get(n).kinds] for k in ENCODER_KINDS
    }
    props = root["properties"]
    props["encoders"] = {
        "type": "object",
        "title": "Encoders",
        "description": PolymodalConfig.model_fields["encoders"].description,
        "properties": {k: {"oneOf": refs} for k, refs in by_kind.items()},
        "additionalProperties": {"oneOf": list(encoders.values())},
    }
    props["fusion"] = {
        "title": "Fusion",
        "description": _doc(FusionConfig),
        "oneOf": [ref(fusion_model(n)) for n in FUSION_PARAMS.names()],
    }
    for unused in ("EncoderChoice", "FusionConfig"):
        defs.pop(unused, None)
    return {**root, "$schema": SCHEMA_DIALECT, "title": "polymodal config"}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2)


# ------------------------------------------------------------------------------------------- example config
def example_yaml(fusion: str = DEFAULT_FUSION) -> str:
    """A complete config with every default, commented from the field descriptions; ``fusion`` picks the fusion
    whose parameters are shown. It loads as is (``--config``) and validates against :func:`json_schema`."""
    FUSION_PARAMS.get(fusion)  # an unknown name: ConfigError with the choices
    cfg = PolymodalConfig()
    lines = [
        "# polymodal config: every value below is the default; keep only what you change.",
        "# Validate it in an editor with `polymodal config schema`; docs/USER_GUIDE.md, section 3.",
        "",
    ]
    for key, field in PolymodalConfig.model_fields.items():
        if key == "encoders":
            lines += _encoders_block(cfg)
        elif key == "fusion":
            lines += _fusion_block(fusion)
        else:
            lines += _field_lines(key, field, getattr(cfg, key), 0)
    return "\n".join(lines).rstrip() + "\n"


def _encoders_block(cfg: PolymodalConfig) -> list[str]:
    lines = _comment(PolymodalConfig.model_fields["encoders"].description, 0)
    lines.append("encoders:")
    for kind, choice in cfg.encoders.items():
        others = [n for n in ENCODER_PARAMS.names() if kind in ENCODER_PARAMS.get(n).kinds]
        lines += _comment(
            f"{kind} columns (encoders: {', '.join(others)}). {choice.name}: {_doc(ENCODER_PARAMS.get(choice.name))}", 2
        )
        lines.append(f"  {kind}:")
        lines += _model_lines(encoder_model(choice.name)(name=choice.name), 4, first=("name",))
    lines += _comment("a column's own encoder, e.g.:  review: {name: text_transformer, layers: 1}", 2)
    return lines + [""]


def _fusion_block(name: str) -> list[str]:
    lines = _comment(f"{_doc(FusionConfig)} Fusions: {', '.join(FUSION_PARAMS.names())}.", 0)
    lines += _comment(f"{name}: {_doc(FUSION_PARAMS.get(name))}", 0)
    lines.append("fusion:")
    lines += _model_lines(fusion_model(name)(name=name), 2, first=("name",))
    return lines + [""]


def _model_lines(model: BaseModel, indent: int, first: tuple[str, ...] = ()) -> list[str]:
    fields = type(model).model_fields
    order = [*first, *(k for k in fields if k not in first)]
    return [line for k in order for line in _field_lines(k, fields[k], getattr(model, k), indent)]


def _field_lines(key: str, field: Any, value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, BaseModel):
        lines = _comment(field.description or _doc(type(value)), indent)
        return lines + [f"{pad}{key}:", *_model_lines(value, indent + 2), *([""] if indent == 0 else [])]
    choices = _literal_choices(field.annotation) if key != "name" else ""  # a component's name: one choice
    note = " ".join(p for p in (field.description or "", f"(one of: {choices})" if choices else "") if p)
    lines = _comment(note, indent) + [f"{pad}{key}: {_scalar(value)}"]
    return lines + ([""] if indent == 0 else [])


def _comment(text: str | None, indent: int) -> list[str]:
    return [f"{' ' * indent}# {text}"] if text else []


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _literal_choices(ann: Any) -> str:
    if get_origin(ann) in (Union, types.UnionType):
        return ", ".join(c for a in get_args(ann) for c in [_literal_choices(a)] if c)
    return ", ".join(map(str, get_args(ann))) if get_origin(ann) is Literal else ""


def _doc(obj: Any) -> str:
    """The first paragraph of a class's own docstring, on one line ("" when it has none)."""
    doc = (inspect.getdoc(obj) if obj.__doc__ else "") or ""
    return " ".join(doc.strip().split("\n\n")[0].split())
