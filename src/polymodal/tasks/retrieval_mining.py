"""Hard-negative mining for retrieval (``task.retrieval.hard_negatives: k``): each query also sees, as negatives,
the ``k`` training targets most similar to it that are not its own.

No extra forward pass: during an epoch the miner keeps the (detached, unit-norm) query and target embeddings that
the training steps themselves computed, keyed by pair id. When the next epoch starts (a pair id comes round again:
every training row appears once per epoch), it mines them with one exact matmul over the training rows
(``[rows, rows]`` similarities, a block of queries at a time) and from then on hands each training batch its queries'
``k`` hardest wrong targets, as constants (their gradient reaches the query tower only). The first epoch is
in-batch only, and the bank is one epoch stale, as in memory-bank methods (Wu et al. 2018; MoCo). Under DDP each
process mines among the rows it trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_BLOCK = 1024


@dataclass
class HardNegatives:
    """One batch's mined negatives: ``vectors`` ``[B, k, D]`` unit target embeddings and ``valid`` ``[B, k]``
    (False for a query with nothing mined yet, e.g. a row the last epoch dropped)."""

    vectors: torch.Tensor
    valid: torch.Tensor


class HardNegativeMiner:
    """Collects a training epoch's embeddings by pair id and mines each query's ``k`` hardest wrong targets."""

    def __init__(self, k: int):
        self.k = k
        self._ids: list[np.ndarray] = []
        self._queries: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._seen: set[int] = set()
        self.bank: torch.Tensor | None = None  # [rows, D] the last epoch's target embeddings
        self.hardest: torch.Tensor | None = None  # [rows, k] rows of `bank`, hardest first
        self.row_of: dict[int, int] = {}  # pair id → row of `bank` / `hardest`
        #: epochs mined so far, and training batches that got mined negatives (what the tests read)
        self.epochs_mined = 0
        self.batches_with_negatives = 0

    def step(self, queries: torch.Tensor, targets: torch.Tensor, ids: torch.Tensor) -> HardNegatives | None:
        """Record one training batch (unit embeddings ``[B, D]``, pair ids ``[B]``) and return its mined
        negatives (None before the first mining)."""
        pair_ids = ids.detach().cpu().numpy().astype(np.int64)
        if self._seen.intersection(pair_ids.tolist()):  # a new epoch: mine the finished one
            self.mine()
        self._ids.append(pair_ids)
        self._queries.append(queries.detach().float().cpu())
        self._targets.append(targets.detach().float().cpu())
        self._seen.update(pair_ids.tolist())
        if self.hardest is None or self.bank is None:
            return None
        rows = torch.tensor([self.row_of.get(int(i), -1) for i in pair_ids])
        valid = (rows >= 0)[:, None].expand(-1, self.hardest.shape[1]).clone()
        picked = self.hardest[rows.clamp(min=0)]  # [B, k]
        vectors = self.bank[picked].to(queries.device)
        self.batches_with_negatives += int(valid.any())
        return HardNegatives(vectors, valid.to(queries.device))

    def mine(self) -> None:
        """Each recorded query's ``k`` most similar recorded targets other than its own pair's (exact)."""
        if not self._ids:
            return
        ids = np.concatenate(self._ids)
        # a row seen twice in one epoch (a sampler that repeats rows): its last embedding counts
        last = {int(i): r for r, i in enumerate(ids)}
        keep = torch.tensor(sorted(last.values()))
        queries, targets = torch.cat(self._queries)[keep], torch.cat(self._targets)[keep]
        kept_ids = ids[keep.numpy()]
        k = min(self.k, len(kept_ids) - 1)
        self._ids, self._queries, self._targets, self._seen = [], [], [], set()
        if k < 1:
            return
        hardest = torch.empty((len(queries), k), dtype=torch.long)
        for start in range(0, len(queries), _BLOCK):
            sims = queries[start : start + _BLOCK] @ targets.T
            own = torch.arange(start, start + sims.shape[0])
            sims[torch.arange(sims.shape[0]), own] = -torch.inf  # never the row's own target
            hardest[start : start + sims.shape[0]] = sims.topk(k, dim=1).indices
        self.bank, self.hardest = targets, hardest
        self.row_of = {int(i): r for r, i in enumerate(kept_ids)}
        self.epochs_mined += 1
