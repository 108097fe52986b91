"""The config checked against the registered components, as soon as it is read.

:mod:`polymodal.config` is a foundation module and cannot know the encoders, fusions and tasks; this module can.
:func:`check_config` validates every ``encoders.*`` choice (the encoder exists, fits the kind it is chosen for, and
its parameters fit that encoder's ``Config``), the fusion's parameters against its ``Params`` and the task, so that a
typo fails in milliseconds with its path and a suggestion, not after every file of the table has been decoded.
Which keys name real columns is only known with the table: :func:`check_encoder_keys` (before decoding).

It reads the parameter registries of :mod:`polymodal.params`, not the components themselves: it imports no torch,
pandas or Lightning (``tests/test_params.py`` checks it), so that ``polymodal fit`` reports a typo at once.
"""

from __future__ import annotations

from pydantic import ValidationError

from .config import (
    ENCODER_KINDS,
    EncoderChoice,
    FusionConfig,
    PolymodalConfig,
    check_encoder_keys,
    did_you_mean,
    encoder_choice,
    format_problems,
    validation_problems,
)
from .errors import ConfigError
from .params import ENCODER_PARAMS, FUSION_PARAMS, TASK_PARAMS, EncoderConfig, FusionParams

__all__ = ["check_config", "check_encoder_keys", "encoder_choice", "encoder_params", "fusion_params"]

# Keys of the fusion section that are not the fusion's own Params.
FUSION_COMMON = ("name", "dim", "dropout")


def check_config(config: PolymodalConfig) -> None:
    """Raise one :class:`ConfigError` listing every problem of ``config``'s components (unknown names, an encoder
    chosen for a kind it does not encode, unknown or ill-typed parameters), each with its path. Reads no file."""
    problems = [p for key, choice in config.encoders.items() for p in _encoder_problems(key, choice, config)]
    problem_type = config.task.problem_type
    if problem_type is not None and problem_type not in TASK_PARAMS:
        problems.append(f"task.problem_type: {_unknown('task', problem_type, TASK_PARAMS.names())}")
    # A task that builds no fusion (generation: token memory → decoder) ignores the fusion section, so configs
    # shared between a fused task and generation keep working.
    elif problem_type is None or TASK_PARAMS.get(problem_type).architecture in ("fused", "autoencoder"):
        problems += _fusion_problems(config.fusion)
    if problems:
        raise ConfigError(format_problems("invalid config", problems))


def encoder_params(key: str, choice: EncoderChoice) -> EncoderConfig:
    """The validated parameters of the encoder chosen under ``encoders.<key>`` (ConfigError if invalid)."""
    cls = ENCODER_PARAMS.get(choice.name)
    try:
        return cls.model_validate(choice.params())
    except ValidationError as e:
        raise ConfigError(
            format_problems("invalid config", validation_problems(e, cls, ("encoders", key), extra_names=("name",)))
        ) from None


def fusion_params(fusion: FusionConfig) -> FusionParams:
    """The validated own parameters of the configured fusion (ConfigError if invalid)."""
    cls = FUSION_PARAMS.get(fusion.name)
    try:
        return cls.model_validate(fusion.params())
    except ValidationError as e:
        raise ConfigError(
            format_problems("invalid config", validation_problems(e, cls, ("fusion",), extra_names=FUSION_COMMON))
        ) from None


def _encoder_problems(key: str, choice: EncoderChoice, config: PolymodalConfig) -> list[str]:
    if choice.name not in ENCODER_PARAMS:
        return [f"encoders.{key}.name: {_unknown('encoder', choice.name, ENCODER_PARAMS.names())}"]
    cls = ENCODER_PARAMS.get(choice.name)
    problems = []
    # A kind key fixes the kind now; a column key only when the config overrides that column's kind.
    kind = key if key in ENCODER_KINDS else config.columns.get(key)
    if kind in ENCODER_KINDS and kind not in cls.kinds:
        problems.append(f"encoders.{key}: '{choice.name}' encodes {', '.join(cls.kinds)} columns, not {kind}")
    try:
        cls.model_validate(choice.params())
    except ValidationError as e:
        problems += validation_problems(e, cls, ("encoders", key), extra_names=("name",))
    return problems


def _fusion_problems(fusion: FusionConfig) -> list[str]:
    if fusion.name not in FUSION_PARAMS:
        return [f"fusion.name: {_unknown('fusion', fusion.name, FUSION_PARAMS.names())}"]
    cls = FUSION_PARAMS.get(fusion.name)
    try:
        cls.model_validate(fusion.params())
    except ValidationError as e:
        return validation_problems(e, cls, ("fusion",), extra_names=FUSION_COMMON)
    return []


def _unknown(what: str, name: str, names: list[str]) -> str:
    """The registries' own wording: ``unknown fusion 'x'; did you mean 'y'? choose one of: ...``."""
    hint = did_you_mean(name, names).removeprefix("; ")
    return f"unknown {what} '{name}'; {hint + ' ' if hint else ''}choose one of: {', '.join(names)}"
