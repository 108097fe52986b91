"""Modality dropout hides whole modalities per row, never all of a row's, and only during training."""

from __future__ import annotations

import torch
from conftest import tiny_config

from polymodal import Predictor
from polymodal.data.dataset import Batch
from polymodal.training.modality_dropout import drop_modalities


def _batch(n: int = 400) -> Batch:
    masks = {"a": torch.ones(n, dtype=torch.bool), "b": torch.ones(n, dtype=torch.bool), "c": torch.arange(n) % 2 == 0}
    return Batch({"a": torch.zeros(n, 1)}, masks, torch.zeros(n, dtype=torch.long))


def test_rate_zero_is_identity():
    b = _batch()
    assert drop_modalities(b, 0.0) is b


def test_drops_at_about_the_rate_and_keeps_one_per_row():
    b = _batch()
    out = drop_modalities(b, 0.3, torch.Generator().manual_seed(0))
    kept = torch.stack(list(out.masks.values()), 1)
    before = torch.stack(list(b.masks.values()), 1)
    assert not (kept & ~before).any(), "an absent modality was made present"
    assert kept.any(1).all(), "a row lost every modality"
    share_dropped = 1 - kept.sum().item() / before.sum().item()
    assert 0.2 < share_dropped < 0.4
    assert out.inputs is b.inputs and out.target is b.target


def test_high_rate_still_keeps_exactly_one_present_modality():
    b = _batch()
    out = drop_modalities(b, 0.99, torch.Generator().manual_seed(1))
    kept = torch.stack(list(out.masks.values()), 1)
    assert (kept.sum(1) >= 1).all() and (kept.sum(1) <= 2).all()
    # Rows where 'c' is absent can only keep 'a' or 'b'.
    assert not kept[~b.masks["c"], 2].any()


def test_fit_with_modality_dropout(train_csv, test_csv):
    cfg = tiny_config(max_epochs=1, modality_dropout=0.3)
    p = Predictor("label", config=cfg, verbose=False).fit(train_csv)
    assert p.config.training.modality_dropout == 0.3
    proba = p.predict_proba(test_csv)
    assert torch.isfinite(torch.tensor(proba.to_numpy())).all()
