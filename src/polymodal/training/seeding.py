"""Seeded randomness for one training run, without changing the caller's random state."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch

# What Lightning's seed_everything writes to the environment (read by its dataloader worker seeding).
_SEED_ENV = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Python, NumPy and torch (CPU and CUDA) as Lightning's ``seed_everything`` does, for the block only.

    Training must be reproducible from its seed, but a library call must not reseed the caller's generators: on
    exit the previous random states and environment variables are restored, so the user's own random draws after
    ``fit`` are the ones they would have been without it.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    env = {k: os.environ.get(k) for k in _SEED_ENV}
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        L.seed_everything(seed, workers=True, verbose=False)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
