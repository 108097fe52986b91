"""Several processes training one model (DDP through Lightning): validation outputs gathered from every rank, and
the distributed samplers seeded from the training seed.

Lightning shards each loader with a ``DistributedSampler``; the validation one pads the last rank with repeated rows
so that every rank runs as many batches. Each batch carries its rows' positions (``Batch.rows``), so the outputs of
all ranks are put back in row order, each row once, and every rank computes the same metrics on the whole
validation set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..config import TrainingConfig, cpu_distribution_problem
from ..errors import ConfigError
from ..tasks import Task


def check_settings(cfg: TrainingConfig) -> None:
    """Refuse, before Lightning does with a bare exception, device settings the machine cannot run: on the CPU (the
    accelerator given or chosen by auto) a list of device ids, FSDP or DeepSpeed."""
    cpu = cfg.accelerator == "cpu" or (
        cfg.accelerator == "auto" and not torch.cuda.is_available() and not torch.backends.mps.is_available()
    )
    if not cpu:
        return
    if problem := cpu_distribution_problem(cfg.devices, cfg.strategy):
        raise ConfigError(f"training.{problem} (this machine trains on the CPU: no GPU was found)")


def check_one_process(cfg: TrainingConfig, command: str) -> None:
    """Refuse several devices or machines for a command that runs many fits in one process (``tune``,
    ``compare``): under DDP every rank would run its own study or comparison and write the same outputs."""
    devices = cfg.devices
    several = (isinstance(devices, int) and (devices > 1 or devices == -1)) or (
        isinstance(devices, list) and len(devices) > 1
    )
    if several or cfg.num_nodes > 1:
        raise ConfigError(
            f"{command} runs its fits one after another in one process: set training.devices to 1 (or auto) and "
            "training.num_nodes to 1, and train the chosen configuration on several devices with `polymodal fit`"
        )


def world_size() -> int:
    """Processes in the running process group (1 when there is none)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_outputs(task: Task, parts: list[Any], rows: list[torch.Tensor], n: int) -> Any | None:
    """The validation outputs of every row ``0 .. n-1``, in row order, from this rank's per-batch ``parts`` and
    their ``rows`` and those of every other rank (a collective call: every rank must make it). None when the
    ranks together did not see every row (Lightning's sanity check runs a few batches only)."""
    positions = torch.cat(rows).numpy() if rows else np.zeros(0, np.int64)
    if world_size() > 1:
        # Objects, not tensors: a task's outputs may be any picklable value (generation's decoded rows)
        everyone: list[Any] = [None] * world_size()
        dist.all_gather_object(everyone, (positions, parts))
        positions = np.concatenate([p for p, _ in everyone])
        parts = [part for _, ps in everyone for part in ps]
    if not parts:
        return None
    outputs = task.collect_outputs(parts)
    if len(positions) == n and np.array_equal(positions, np.arange(n)):
        return outputs  # one process, in order: nothing to reorder
    # np.unique: each position once (the sampler's padding repeats a few), sorted, with where it first came
    unique, first = np.unique(positions, return_index=True)
    if len(unique) != n or unique[0] != 0 or unique[-1] != n - 1:
        return None
    return task.select_outputs(outputs, first)


@contextlib.contextmanager
def sampler_seed(seed: int) -> Iterator[None]:
    """Lightning seeds the distributed samplers it puts in the loaders from ``PL_GLOBAL_SEED`` (0 when unset): set
    it to the training seed for the block, so the shuffled shards follow the seed, as one process's order does.
    Every rank computes the same value; the launcher's child processes inherit it."""
    before = os.environ.get("PL_GLOBAL_SEED")
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PL_GLOBAL_SEED", None)
        else:
            os.environ["PL_GLOBAL_SEED"] = before


@contextlib.contextmanager
def spawn_safe_sharing(strategy: str) -> Iterator[None]:
    """``ddp_spawn`` pickles the module and the loaders for its workers. Under torch's default ``file_descriptor``
    sharing, a storage reached twice (a tensor and a view of it) passes the same descriptor twice, which Python's
    spawn refuses ("bad value(s) in fds_to_keep"); ``file_system`` sharing has no such limit. Set for the block."""
    if not strategy.startswith("ddp_spawn"):
        yield
        return
    import torch.multiprocessing as mp

    before = mp.get_sharing_strategy()
    mp.set_sharing_strategy("file_system")
    try:
        yield
    finally:
        mp.set_sharing_strategy(before)


@contextlib.contextmanager
def distributed_fit(seed: int, strategy: str) -> Iterator[None]:
    """Around ``trainer.fit``: :func:`sampler_seed` and :func:`spawn_safe_sharing`."""
    with sampler_seed(seed), spawn_safe_sharing(strategy):
        yield
