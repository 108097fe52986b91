"""Hard-negative mining of retrieval (task.retrieval.hard_negatives): what is mined, that the loss uses it, and a
fit that trains with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from polymodal import Predictor
from polymodal.config import TaskConfig
from polymodal.datasets.pairs import make_pairs
from polymodal.tasks.retrieval import RetrievalTask, info_nce
from polymodal.tasks.retrieval_mining import HardNegativeMiner


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def test_miner_finds_the_most_similar_wrong_targets_after_an_epoch():
    torch.manual_seed(0)
    targets = unit(torch.eye(6) + 0.1 * torch.randn(6, 6))  # nearly orthogonal: no accidental near neighbours
    queries = targets.clone()
    queries[0] = unit(targets[0] + 0.9 * targets[3])  # query 0's hardest wrong target is 3
    ids = torch.arange(6)
    miner = HardNegativeMiner(2)
    # the first epoch (two batches): nothing mined yet, in-batch only
    assert miner.step(queries[:3], targets[:3], ids[:3]) is None
    assert miner.step(queries[3:], targets[3:], ids[3:]) is None
    # the second epoch's first batch (pair ids come round again): the finished epoch is mined
    hard = miner.step(queries[[0, 4]], targets[[0, 4]], ids[[0, 4]])
    assert hard is not None and miner.epochs_mined == 1
    sims = queries @ targets.T
    sims.fill_diagonal_(-np.inf)
    expected = sims.topk(2, dim=1).indices
    assert int(expected[0, 0]) == 3
    torch.testing.assert_close(hard.vectors, targets[expected[[0, 4]]])
    assert hard.valid.all()
    # never a row's own target
    assert all(i not in miner.hardest[i].tolist() for i in range(6))


def test_the_loss_sees_the_mined_negatives():
    torch.manual_seed(1)
    out = unit(torch.randn(4, 2, 8)) * 3.0
    task = RetrievalTask(TaskConfig(problem_type="retrieval", retrieval={"query": ["q"], "target": ["t"]}))
    plain = info_nce(out)
    assert torch.allclose(task.loss(out, torch.arange(4)), plain)  # no mining configured: plain InfoNCE
    mining = RetrievalTask(
        TaskConfig(problem_type="retrieval", retrieval={"query": ["q"], "target": ["t"], "hard_negatives": 2})
    )
    ids = torch.arange(4)
    first = out.clone().requires_grad_(True)
    assert torch.allclose(mining.loss(first, ids), plain)  # epoch 1: in-batch only
    second = out.clone().requires_grad_(True)
    loss = mining.loss(second, ids)  # epoch 2: every query also sees 2 mined targets
    assert mining.miner is not None and mining.miner.batches_with_negatives == 1
    # by hand: the query→target logits get the mined targets' columns (scaled like the in-batch ones)
    q, t = out[:, 0], out[:, 1]
    mined = unit(t)[mining.miner.hardest[ids]]
    extra = torch.einsum("bd,bkd->bk", q, mined) * 3.0
    q2t = torch.cat([q @ t.T, extra], dim=1)
    expected = (F.cross_entropy(q2t, ids) + F.cross_entropy(t @ q.T, ids)) / 2
    torch.testing.assert_close(loss, expected)
    assert loss > plain  # harder negatives: a larger loss for the same embeddings
    loss.backward()
    assert second.grad is not None and torch.isfinite(second.grad).all()
    # validation (no gradient) neither records nor mines
    before = mining.miner.batches_with_negatives
    with torch.no_grad():
        mining.loss(out, ids)
    assert mining.miner.batches_with_negatives == before


def test_a_fit_with_hard_negatives_trains_and_uses_them(tmp_path):
    pairs = make_pairs(tmp_path, n_train=48, n_test=12, seed=2)
    config = {
        "training": {"max_epochs": 3, "batch_size": 16, "learning_rate": 3e-3, "patience": 10},
        "encoders": {
            "image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2},
            "text": {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16},
        },
        "fusion": {"dim": 32},
        "task": {"retrieval": {"dim": 16, "hard_negatives": 3}},
    }
    p = Predictor(problem_type="retrieval", query=["caption"], target=["image"], config=config, seed=0, verbose=False)
    p.fit(pairs.train)
    task = p.pipeline.task
    assert isinstance(task, RetrievalTask) and task.miner is not None
    assert task.miner.epochs_mined >= 2 and task.miner.batches_with_negatives > 0
    assert task.miner.hardest is not None and task.miner.hardest.shape[1] == 3
    m = p.evaluate(pairs.test)
    assert np.isfinite(m["recall@10"]) and m["rows"] == 12
    assert all(np.isfinite(r["train_loss"]) for r in p.fit_result.history)


@pytest.mark.parametrize("bad", [-1, 2000])
def test_hard_negatives_out_of_range_is_refused(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="hard_negatives"):
        TaskConfig(problem_type="retrieval", retrieval={"query": ["q"], "target": ["t"], "hard_negatives": bad})
