"""The search space of tuning: config paths → distributions, generated from the typed component configs.

A :class:`SearchSpace` maps a dotted config path (``training.learning_rate``, ``fusion.name``,
``encoders.text.hidden``) to a distribution: :class:`Categorical` choices, an :class:`IntRange` or a
:class:`FloatRange` (each optionally on a log scale). :func:`default_space` generates it from the config and the
parameter registries (:mod:`polymodal.params`): the registered fusions, the fusion's width and dropout, the size
parameters of each configured encoder's ``Config`` and the training loop's learning rate, weight decay, modality
dropout and epochs. A YAML file (:func:`load_space`) overrides, adds or removes entries. :func:`check_space` checks
every path and every end of every range against the config's own types and bounds before any table is read, so
that a typo or an impossible range fails in milliseconds with its path named.

Like :mod:`polymodal.components`, this module imports no torch, pandas or Lightning.
"""

from __future__ import annotations

import copy
import math
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from ..components import FUSION_COMMON, check_config
from ..config import (
    FusionConfig,
    PolymodalConfig,
    did_you_mean,
    format_problems,
    read_yaml_file,
    validation_problems,
)
from ..errors import ConfigError
from ..params import ENCODER_PARAMS, FUSION_PARAMS, TASK_PARAMS

__all__ = [
    "Categorical",
    "FloatRange",
    "IntRange",
    "SearchSpace",
    "SpaceFile",
    "apply_values",
    "check_space",
    "default_space",
    "load_space",
    "resolve_space",
]

Scalar = bool | int | float | str


class _Trial(Protocol):
    """What a distribution asks of a trial (an ``optuna.Trial``; this module does not import optuna)."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def values(self) -> list[Scalar]:
        """The values a check of the config's types and bounds tries: the choices, or the two ends of a range."""
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        raise NotImplementedError

    def suggest(self, trial: _Trial, path: str) -> Any:
        raise NotImplementedError


class Categorical(_Dist):
    """One of a list of values (a component name, a width)."""

    type: Literal["categorical"] = "categorical"
    choices: list[Scalar] = Field(..., min_length=1, description="the values to choose from")

    def values(self) -> list[Scalar]:
        return list(self.choices)

    def contains(self, value: Any) -> bool:
        return value in self.choices

    def suggest(self, trial: _Trial, path: str) -> Any:
        return trial.suggest_categorical(path, self.choices)


class IntRange(_Dist):
    """An integer from ``low`` to ``high`` (both included)."""

    type: Literal["int"] = "int"
    low: int = Field(..., description="smallest value")
    high: int = Field(..., description="largest value")
    log: bool = Field(False, description="sample on a log scale (low must be at least 1)")

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and self.low < 1:
            raise ValueError(f"a log scale needs low >= 1, got {self.low}")
        return self

    def values(self) -> list[Scalar]:
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high

    def suggest(self, trial: _Trial, path: str) -> Any:
        return trial.suggest_int(path, self.low, self.high, log=self.log)


class FloatRange(_Dist):
    """A number from ``low`` to ``high``."""

    type: Literal["float"] = "float"
    low: float = Field(..., description="smallest value")
    high: float = Field(..., description="largest value")
    log: bool = Field(False, description="sample on a log scale (low must be above 0): for learning rates")

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0, got {self.low}")
        return self

    def values(self) -> list[Scalar]:
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def suggest(self, trial: _Trial, path: str) -> Any:
        return trial.suggest_float(path, self.low, self.high, log=self.log)


Distribution = Annotated[Categorical | IntRange | FloatRange, Field(discriminator="type")]


def _infer_type(value: Any) -> Any:
    """``{"low": 1, "high": 4}`` is an int range, ``{"low": 0.0, ...}`` a float range, ``{"choices": [...]}`` a
    categorical: the ``type`` key may be left out when the other keys say it."""
    if not isinstance(value, Mapping) or "type" in value:
        return value
    if "choices" in value:
        return {**value, "type": "categorical"}
    ends = [value.get("low"), value.get("high")]
    is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in ends)
    return {**value, "type": "int" if is_int else "float"}


def _infer_types(data: Any) -> Any:
    if isinstance(data, Mapping) and isinstance(data.get("params"), Mapping):
        data = {**data, "params": {k: _infer_type(v) for k, v in data["params"].items()}}
    return data


class SearchSpace(BaseModel):
    """Config path → distribution; each trial's config is the user's config with one value of each applied."""

    model_config = ConfigDict(extra="forbid")
    params: dict[str, Distribution] = Field(
        default_factory=dict, description="dotted config path → distribution, e.g. training.learning_rate"
    )

    @model_validator(mode="before")
    @classmethod
    def _types(cls, data: Any) -> Any:
        return _infer_types(data)

    def suggest(self, trial: _Trial) -> dict[str, Any]:
        """One value per path, asked of ``trial`` (component names first: the others may depend on them)."""
        return {path: self.params[path].suggest(trial, path) for path in _ordered(self.params)}

    def defaults(self, config: PolymodalConfig) -> dict[str, Any]:
        """The values ``config`` itself has for the paths whose distribution contains them (the baseline trial)."""
        data = config.to_dict()
        out = {}
        for path, dist in self.params.items():
            found, value = _get(data, path)
            if found and dist.contains(value):
                out[path] = value
        return out

    def describe(self) -> list[str]:
        """One line per entry, for logs and ``--help``-style listings."""
        return [f"{path}: {_describe(dist)}" for path, dist in self.params.items()]


class SpaceFile(BaseModel):
    """A ``--space`` YAML file: entries that override or add to the generated space (``null`` removes one)."""

    model_config = ConfigDict(extra="forbid")
    defaults: bool = Field(
        True, description="start from the generated space (false: the space is exactly the entries given here)"
    )
    params: dict[str, Distribution | None] = Field(
        default_factory=dict,
        description="dotted config path → distribution (type: categorical with choices, or int/float with low, "
        "high and log); null removes a generated entry",
    )

    @model_validator(mode="before")
    @classmethod
    def _types(cls, data: Any) -> Any:
        return _infer_types(data)


def _describe(dist: _Dist) -> str:
    if isinstance(dist, Categorical):
        return "one of " + ", ".join(map(str, dist.choices))
    assert isinstance(dist, (IntRange, FloatRange))
    return f"{dist.type} {dist.low} .. {dist.high}{' (log)' if dist.log else ''}"


# ------------------------------------------------------------------------------------------------ generated
#: The training loop's entries. Fixed bounds rather than bounds around the configured value: the configured
#: value may be the poor one that tuning is run to get away from.
TRAINING_SPACE: dict[str, _Dist] = {
    "training.learning_rate": FloatRange(low=1e-4, high=3e-2, log=True),
    "training.weight_decay": FloatRange(low=1e-5, high=1e-1, log=True),
    "training.modality_dropout": FloatRange(low=0.0, high=0.5),
}
#: Encoder parameters that are not sizes: caps (``max_*``), counts tied to another value (attention heads must
#: divide the width) and how much of a pretrained backbone trains (``last_n``).
NOT_SIZES = ("heads", "last_n")


def default_space(
    config: PolymodalConfig, encoder_keys: Iterable[str] | None = None, modalities: int | None = None
) -> SearchSpace:
    """The generated space for ``config``.

    ``encoder_keys``: the ``encoders`` keys whose size parameters are searched (default: every key of the config;
    tuning passes the keys the table's modalities use once the table is read). ``modalities``: how many the table
    has (modality dropout is searched only when there are several; None = unknown, searched).

    Entries: ``fusion.name`` (every registered fusion), ``fusion.dim`` (powers of two around the default),
    ``fusion.dropout`` (for tasks that fuse); each encoder's size parameters (integer fields of its ``Config``:
    widths ≥ 8 as powers of two from half to twice the default, counts such as layers within one of the default;
    ``max_*`` caps and the fields in :data:`NOT_SIZES` are left alone); :data:`TRAINING_SPACE` and
    ``training.max_epochs`` (half to twice the configured number, 20 when automatic).
    """
    params: dict[str, _Dist] = {}
    problem_type = config.task.problem_type
    if problem_type is None or TASK_PARAMS.get(problem_type).architecture == "fused":
        params["fusion.name"] = Categorical(choices=list(FUSION_PARAMS.names()))
        dim = FusionConfig.model_fields["dim"]
        params["fusion.dim"] = _widths(_default(dim), dim)
        params["fusion.dropout"] = FloatRange(low=0.0, high=0.5)
    for key in config.encoders if encoder_keys is None else encoder_keys:
        cls = ENCODER_PARAMS.get(config.encoders[key].name)
        for name, field in cls.model_fields.items():
            dist = _size_distribution(name, field)
            if dist is not None:
                params[f"encoders.{key}.{name}"] = dist
    for path, dist in TRAINING_SPACE.items():
        if path != "training.modality_dropout" or modalities is None or modalities > 1:
            params[path] = dist
    epochs = config.training.max_epochs or 20
    params["training.max_epochs"] = IntRange(low=max(1, epochs // 2), high=max(2, epochs * 2))
    return SearchSpace(params=params)


def _default(field: FieldInfo) -> Any:
    return field.get_default(call_default_factory=True)


def _bounds(field: FieldInfo) -> tuple[float, float]:
    """The integer bounds of a field's constraints (ge/gt/le/lt), infinite where it has none."""
    lo, hi = -math.inf, math.inf
    for m in field.metadata:
        for attr, shift, lower in (("ge", 0, True), ("gt", 1, True), ("le", 0, False), ("lt", -1, False)):
            bound = getattr(m, attr, None)
            if bound is not None:
                lo, hi = (max(lo, bound + shift), hi) if lower else (lo, min(hi, bound + shift))
    return lo, hi


def _widths(default: int, field: FieldInfo) -> Categorical:
    lo, hi = _bounds(field)
    base = 2 ** round(math.log2(default))
    choices = [w for w in (base // 4, base // 2, base, base * 2) if lo <= w <= hi and w >= 1]
    return Categorical(choices=sorted(set(choices) | {default}))


def _size_distribution(name: str, field: FieldInfo) -> _Dist | None:
    """The distribution of an encoder parameter when it is a size (an integer field with an integer default)."""
    if field.annotation is not int or name.startswith("max_") or name in NOT_SIZES:
        return None
    default = _default(field)
    if not isinstance(default, int) or isinstance(default, bool) or default < 1:
        return None
    if default >= 8:
        return _widths(default, field)
    lo, hi = _bounds(field)
    low, high = int(max(lo, 1, default - 1)), int(min(hi, default + 1))
    return IntRange(low=low, high=high) if low < high else None


# ------------------------------------------------------------------------------------------ reading a file
def load_space(path: str | Path | None, config: PolymodalConfig) -> SearchSpace:
    """The search space for ``config``: generated, then overridden by the YAML file at ``path`` (when given), then
    checked (:func:`check_space`). Reads no table: a bad path or range fails at once, named."""
    generated = default_space(config)
    if path is None:
        return generated
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"search space file not found: {source}")
    raw = read_yaml_file(source, "search space file") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"search space file {source} must hold a mapping (keys: defaults, params)")
    try:
        spec = SpaceFile.model_validate(raw)
    except ValidationError as e:
        problems = validation_problems(e, SpaceFile)
        raise ConfigError(format_problems(f"invalid search space {source}", _tidy(problems))) from None
    return resolve_space(spec, config, generated, where=f" {source}")


def _tidy(problems: list[str]) -> list[str]:
    # pydantic names the union member it tried ("params.x.float.low"); the user wrote "params.x.low".
    out = []
    for p in problems:
        for tag in (".categorical.", ".int.", ".float."):
            p = p.replace(tag, ".")
        out.append(p)
    return out


def resolve_space(
    spec: SpaceFile | Mapping[str, Any],
    config: PolymodalConfig,
    generated: SearchSpace | None = None,
    where: str = "",
) -> SearchSpace:
    """The generated space with ``spec``'s entries applied (``None`` removes one), checked against ``config``."""
    if not isinstance(spec, SpaceFile):
        try:
            spec = SpaceFile.model_validate(dict(spec))
        except ValidationError as e:
            problems = _tidy(validation_problems(e, SpaceFile))
            raise ConfigError(format_problems(f"invalid search space{where}", problems)) from None
    base = generated if generated is not None else default_space(config)
    params: dict[str, Any] = dict(base.params) if spec.defaults else {}
    problems = []
    for path, dist in spec.params.items():
        if dist is None:
            if path not in params:
                hint = did_you_mean(path, params) or f"; its entries are: {', '.join(params) or '(none)'}"
                problems.append(f"params.{path}: nothing to remove, the space has no such entry{hint}")
            params.pop(path, None)
        else:
            params[path] = dist
    if problems:
        raise ConfigError(format_problems(f"invalid search space{where}", problems))
    space = SearchSpace(params=params)
    check_space(space, config, where)
    return space


# ------------------------------------------------------------------------------------------ checking paths
def check_space(space: SearchSpace, config: PolymodalConfig, where: str = "") -> None:
    """Raise one :class:`ConfigError` naming every entry whose path is not a config parameter, whose distribution
    does not fit the parameter's type (a float range over an integer), or one of whose values (each choice, each end
    of a range) the config refuses (out of its bounds, an unknown component name)."""
    problems = []
    for path, dist in space.params.items():
        try:
            annotation = _annotation(path, config, space)
        except ConfigError as e:
            problems.append(f"params.{path}: {e}")
            continue
        if isinstance(dist, FloatRange) and _strip_optional(annotation) is int:
            problems.append(f"params.{path}: an integer parameter; give an int range (integer low and high)")
            continue
        for value in dist.values():
            bad = _value_problem(config, path, value)
            if bad:
                problems.append(f"params.{path}: {value!r} is not a valid value ({bad})")
                break
    if problems:
        raise ConfigError(format_problems(f"invalid search space{where}", problems))


def _annotation(path: str, config: PolymodalConfig, space: SearchSpace) -> Any:
    """The type of the config parameter at ``path`` (ConfigError naming what is wrong when there is none)."""
    parts = path.split(".")
    if parts[0] == "encoders":
        if len(parts) != 3:
            raise ConfigError("an encoder parameter is encoders.<kind or column>.<parameter>")
        key, name = parts[1], parts[2]
        if key not in config.encoders:
            hint = did_you_mean(key, config.encoders).removeprefix("; ")
            raise ConfigError(
                f"the config has no encoder under '{key}' ({hint + ' ' if hint else ''}keys: "
                f"{', '.join(config.encoders)}); add encoders.{key}.name to the config to tune that column's encoder"
            )
        if name == "name":
            return str
        candidates = [config.encoders[key].name, *_choices(space, f"encoders.{key}.name")]
        return _component_field(name, [c for c in candidates if c in ENCODER_PARAMS], ENCODER_PARAMS, "encoder")
    if parts[0] == "fusion" and len(parts) == 2:
        if parts[1] in FUSION_COMMON:
            return FusionConfig.model_fields[parts[1]].annotation
        candidates = [config.fusion.name, *_choices(space, "fusion.name")]
        return _component_field(parts[1], [c for c in candidates if c in FUSION_PARAMS], FUSION_PARAMS, "fusion")
    model: Any = PolymodalConfig
    for i, part in enumerate(parts):
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else None
        if fields is None or part not in fields:
            where = ".".join(parts[:i]) or "the config"
            names = list(fields or [])
            hint = did_you_mean(part, names) or (f"; valid keys: {', '.join(names)}" if names else "")
            raise ConfigError(f"'{part}' is not a key of {where}{hint}")
        model = _strip_optional(fields[part].annotation)
    if (isinstance(model, type) and issubclass(model, BaseModel)) or get_origin(model) in (dict, list):
        raise ConfigError("a section, not a parameter: name one of its keys")
    return model


def _component_field(name: str, candidates: list[str], registry: Any, what: str) -> Any:
    fields = {}
    for c in candidates:
        fields.update(registry.get(c).model_fields)
    if name not in fields:
        hint = did_you_mean(name, fields) or f"; its parameters: {', '.join(fields) or '(none)'}"
        raise ConfigError(f"'{name}' is not a parameter of the {what} {' or '.join(dict.fromkeys(candidates))}{hint}")
    return fields[name].annotation


def _choices(space: SearchSpace, path: str) -> list[str]:
    dist = space.params.get(path)
    return [str(c) for c in dist.choices] if isinstance(dist, Categorical) else []


def _value_problem(config: PolymodalConfig, path: str, value: Any) -> str:
    """Why ``config`` with ``value`` at ``path`` is invalid ("" when it is valid)."""
    data = apply_values(config.to_dict(), {path: value})
    try:
        check_config(PolymodalConfig.model_validate(data))
    except ValidationError as e:
        return "; ".join(validation_problems(e, PolymodalConfig))
    except ConfigError as e:
        return str(e).removeprefix("invalid config: ")
    return ""


def _strip_optional(ann: Any) -> Any:
    if get_origin(ann) in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        return args[0] if len(args) == 1 else ann
    return ann


# ------------------------------------------------------------------------------------------ applying values
def _ordered(paths: Iterable[str]) -> list[str]:
    """Component names first: whether an encoder's or a fusion's own parameter applies depends on the name."""
    return sorted(paths, key=lambda p: (not p.endswith(".name"), p))


def apply_values(data: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the config mapping ``data`` with ``values`` (path → value) applied.

    A new ``fusion.name`` or ``encoders.<key>.name`` drops the old component's own parameters (they belong to it,
    as ``apply_choices`` does for ``--fusion``); an own parameter that the chosen component does not have is left
    out (a conditional parameter: ``fusion.heads`` is used when the trial's fusion has heads)."""
    out = copy.deepcopy(dict(data))
    for path in _ordered(values):
        value, parts = values[path], path.split(".")
        if parts[0] == "encoders" and len(parts) == 3:
            entry = out.setdefault("encoders", {}).setdefault(parts[1], {})
            if parts[2] == "name":
                if entry.get("name") != value:
                    out["encoders"][parts[1]] = {"name": value}
            elif _has_field(ENCODER_PARAMS, entry.get("name"), parts[2]):
                entry[parts[2]] = value
            continue
        if parts[0] == "fusion" and len(parts) == 2:
            fusion = out.setdefault("fusion", {})
            if parts[1] == "name":
                if fusion.get("name") != value:
                    out["fusion"] = {k: v for k, v in fusion.items() if k in FUSION_COMMON} | {"name": value}
            elif parts[1] in FUSION_COMMON or _has_field(FUSION_PARAMS, fusion.get("name", "concat"), parts[1]):
                fusion[parts[1]] = value
            continue
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _has_field(registry: Any, name: Any, field: str) -> bool:
    return isinstance(name, str) and name in registry and field in registry.get(name).model_fields


def _get(data: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node
