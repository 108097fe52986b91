"""Which process of a multi-process (DDP) training this is, so that only the first one writes and prints.

A launcher runs the whole program once per rank: Lightning's subprocess launcher re-runs the command line with
``LOCAL_RANK`` / ``NODE_RANK`` set, torchrun sets ``RANK``, SLURM's ``srun`` sets ``SLURM_PROCID``. Every rank reads
the data and trains; the run directory, the summary and the progress output belong to rank 0 alone.

Imports no torch (the command line asks before anything heavy is imported): once a process group exists (torch
already imported by the training), its rank is the answer; before, the launcher's environment variables are.
"""

from __future__ import annotations

import os
import sys

#: variables that hold a process's global rank (torchrun / Lightning; SLURM; LSF's jsrun), as Lightning reads them
_GLOBAL_RANK_VARS = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value.lstrip("-").isdigit() else None


def process_rank() -> int:
    """The global rank of this process: 0 in an ordinary run and on the first process of a distributed one."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    for name in _GLOBAL_RANK_VARS:
        if (rank := _env_int(name)) is not None:
            return rank
    # Lightning's own launcher gives a child its local rank and the node's rank; any of them above 0 is not rank 0
    return max(_env_int("LOCAL_RANK") or 0, _env_int("NODE_RANK") or 0, _env_int("GROUP_RANK") or 0)


def is_main_process() -> bool:
    """True on rank 0 (and in every single-process run): the process that writes outputs and prints results."""
    return process_rank() == 0
