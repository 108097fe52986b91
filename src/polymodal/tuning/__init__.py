"""Hyperparameter tuning on Optuna: a search space generated from the typed component configs, a study stored in
a file (resumable, shareable by several processes), pruning through a Lightning callback, a leaderboard, and the
best trial saved as a normal run directory. ``polymodal tune`` and ``Predictor.tune`` call :func:`tune`."""

from .run import TuneResult, tune
from .space import Categorical, FloatRange, IntRange, SearchSpace, SpaceFile, default_space, load_space

__all__ = [
    "Categorical",
    "FloatRange",
    "IntRange",
    "SearchSpace",
    "SpaceFile",
    "TuneResult",
    "default_space",
    "load_space",
    "tune",
]
