"""Fusion zoo A: weighted, product, gated (GMU), tensor (TFN) and low-rank (LMF) fusion, with missing modalities."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import tiny_config

from polymodal import Predictor
from polymodal.encoders import Encoded
from polymodal.errors import ConfigError
from polymodal.fusion import FusionInput, build_fusion
from polymodal.registry import FUSIONS

NAMES = ["weighted", "product", "gated", "tensor", "lowrank"]
MODS = [FusionInput("a", 6), FusionInput("b", 5), FusionInput("c", 7)]
B, DIM = 5, 12


def make_encoded(mask_rows: dict[str, list[bool]], seed: int = 0, grad: bool = False) -> dict[str, Encoded]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for f in MODS:
        pooled = torch.randn(B, f.dim, generator=g).requires_grad_(grad)
        out[f.name] = Encoded(pooled, None, torch.tensor(mask_rows[f.name]))
    return out


# row 0: all present; row 1: "a" missing; row 2: only "c" present; row 3: none present; row 4: only "a" present
MASKS = {
    "a": [True, False, False, False, True],
    "b": [True, True, False, False, False],
    "c": [True, True, True, False, False],
}


def build(name: str, **params):
    torch.manual_seed(0)
    return build_fusion(name, MODS, DIM, 0.0, params).eval()


def test_all_registered():
    for name in NAMES:
        assert name in FUSIONS
        assert FUSIONS.get(name).__doc__.strip()


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_finite_with_missing(name):
    fusion = build(name)
    with torch.no_grad():
        out = fusion(make_encoded(MASKS))
    assert out.shape == (B, DIM)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_absent_modality_does_not_influence_output(name):
    fusion = build(name)
    enc = make_encoded(MASKS, seed=0)
    changed = make_encoded(MASKS, seed=0)
    for f in MODS:  # overwrite absent rows with wild values (large, inf and NaN)
        absent = ~changed[f.name].mask
        p = changed[f.name].pooled.clone()
        p[absent] = 1e6
        if absent.any():
            p[absent.nonzero()[0, 0], 0] = float("nan")
        changed[f.name] = Encoded(p, None, changed[f.name].mask)
    with torch.no_grad():
        a, b = fusion(enc), fusion(changed)
    assert torch.isfinite(b).all()
    assert torch.equal(a, b)
    # while a PRESENT modality's input does change the row
    present_changed = make_encoded(MASKS, seed=0)
    p = present_changed["c"].pooled.clone()
    p[0] += torch.randn(p.shape[1], generator=torch.Generator().manual_seed(1))  # not a constant shift
    present_changed["c"] = Encoded(p, None, present_changed["c"].mask)
    with torch.no_grad():
        c = fusion(present_changed)
    assert not torch.allclose(a[0], c[0])
    assert torch.equal(a[1:], c[1:])


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_present_input(name):
    fusion = build(name)
    enc = make_encoded(MASKS, grad=True)
    fusion.train()
    fusion(enc).pow(2).sum().backward()
    for f in MODS:
        g = enc[f.name].pooled.grad
        assert g is not None and torch.isfinite(g).all()
        m = enc[f.name].mask
        assert (g[m].abs().sum(1) > 0).all(), f.name  # every present row gets gradient
        assert (g[~m] == 0).all(), f.name  # absent rows get none


@pytest.mark.parametrize("name", ["tensor", "lowrank"])
def test_params_and_bad_params(name):
    key = "rank_dim" if name == "tensor" else "rank"
    fusion = build(name, **{key: 2})
    assert getattr(fusion.params, key) == 2
    with torch.no_grad():
        assert fusion(make_encoded(MASKS)).shape == (B, DIM)
    with pytest.raises(ConfigError, match=name):
        build_fusion(name, MODS, DIM, 0.0, {"bogus": 1})
    with pytest.raises(ConfigError):
        build_fusion(name, MODS, DIM, 0.0, {key: 0})


def test_tensor_width_is_outer_product_size():
    fusion = build("tensor", rank_dim=3)
    assert fusion.out[0].in_features == 4 ** len(MODS)


# ---- on a real model built from the tiny table -------------------------------------------------------------


@pytest.mark.parametrize("name", ["gated", "lowrank"])
def test_predictor_fit_end_to_end(train_csv, test_csv, name):
    raw = tiny_config(max_epochs=1)
    raw["fusion"]["name"] = name
    p = Predictor("label", config=raw, verbose=False, seed=0).fit(train_csv)
    preds = p.predict(test_csv)
    assert len(preds) == len(pd.read_csv(test_csv))
    assert set(preds.unique()) <= {"yes", "no"}
    metrics = p.evaluate(test_csv)
    assert metrics
