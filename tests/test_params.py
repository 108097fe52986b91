"""The components' parameters (polymodal.params) and the components themselves (encoders, fusion, tasks) can never
drift apart; the config check and the config schema that read the parameters import no torch, pandas or Lightning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polymodal import encoders as _encoders  # noqa: F401  (registers the encoders)
from polymodal import fusion as _fusion  # noqa: F401  (registers the fusions)
from polymodal import tasks as _tasks  # noqa: F401  (registers the tasks)
from polymodal.params import ENCODER_PARAMS, FUSION_PARAMS, TASK_PARAMS
from polymodal.registry import ENCODERS, FUSIONS, TASKS

SRC = Path(__file__).resolve().parents[1] / "src"


def test_the_registries_name_the_same_components() -> None:
    assert ENCODER_PARAMS.names() == ENCODERS.names()
    assert FUSION_PARAMS.names() == FUSIONS.names()
    assert TASK_PARAMS.names() == TASKS.names()


@pytest.mark.parametrize("name", ENCODERS.names())
def test_an_encoder_uses_its_registered_config(name: str) -> None:
    encoder, config = ENCODERS.get(name), ENCODER_PARAMS.get(name)
    assert encoder.Config is config, f"{encoder.__name__}.Config is not params' '{name}' ({config.__name__})"
    assert encoder.kinds == config.kinds and config.kinds, f"'{name}': kinds {encoder.kinds} != {config.kinds}"
    assert config.__doc__, f"{config.__name__}: its docstring describes '{name}' in the config schema"


@pytest.mark.parametrize("name", FUSIONS.names())
def test_a_fusion_uses_its_registered_params(name: str) -> None:
    fusion, params = FUSIONS.get(name), FUSION_PARAMS.get(name)
    assert fusion.Params is params, f"{fusion.__name__}.Params is not params' '{name}' ({params.__name__})"
    assert params.__doc__, f"{params.__name__}: its docstring describes '{name}' in the config schema"


@pytest.mark.parametrize("name", TASKS.names())
def test_a_task_has_the_architecture_the_check_knows(name: str) -> None:
    assert TASKS.get(name).architecture == TASK_PARAMS.get(name).architecture


# A config with a typo at each level the check reads: an encoder's parameter, the fusion's, the task's section.
_PROBE = """
import json, sys
from polymodal.components import check_config
from polymodal.config import PolymodalConfig
from polymodal.config_schema import example_yaml, json_schema
from polymodal.errors import ConfigError

check_config(PolymodalConfig.from_any({"encoders": {"review": {"name": "text_rnn"}}, "fusion": {"name": "film"}}))
try:
    check_config(PolymodalConfig.from_any({"encoders": {"image": {"name": "image_cnn", "widht": 8}},
                                           "fusion": {"name": "late", "combin": "vote"}}))
    message = ""
except ConfigError as e:
    message = str(e)
json_schema(), example_yaml("late")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "pandas", "lightning", "transformers"))
print(json.dumps({"message": message, "heavy": heavy}))
"""


def test_the_config_check_imports_no_torch_pandas_or_lightning() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert "encoders.image.widht: unknown key; did you mean 'width'?" in result["message"]
    assert "fusion.combin: unknown key; did you mean 'combine'?" in result["message"]
    assert result["heavy"] == [], f"the config check imported {result['heavy'][:5]}…"


def test_each_component_is_described_once_on_its_params_class():
    """A component class without a docstring of its own takes its parameter class's: one description to maintain."""
    from polymodal.fusion.film import FiLMFusion
    from polymodal.params.fusion import FiLMParams

    assert FiLMFusion.__doc__ == FiLMParams.__doc__ and "Perez et al. 2018" in FiLMFusion.__doc__
    for name in ENCODERS.names():
        assert ENCODERS.get(name).__doc__, name
    for name in FUSIONS.names():
        assert FUSIONS.get(name).__doc__, name
