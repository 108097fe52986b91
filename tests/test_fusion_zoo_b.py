"""Attention, transformer, graph and FiLM fusions: shapes, gradients, absent modalities and an end-to-end fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config

from polymodal import Predictor
from polymodal.encoders import Encoded
from polymodal.errors import ConfigError
from polymodal.fusion import FusionInput, build_fusion
from polymodal.registry import FUSIONS

NAMES = ["attention", "transformer", "graph", "film"]
HEADED = ("attention", "transformer")
B, DIM = 5, 16
# name, encoder dim, tokens per row (the text modality gets a token mask)
MODS = [("image", 8, 6), ("audio", 12, 7), ("text", 10, 9), ("tabular", 6, 1)]


def make_encoded(mask_rows: dict[str, list[bool]], seed: int = 0, grad: bool = False) -> dict[str, Encoded]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, d, t in MODS:
        mask = torch.tensor(mask_rows[name])
        pooled = torch.randn(B, d, generator=g).requires_grad_(grad)
        tokens = torch.randn(B, t, d, generator=g).requires_grad_(grad)
        token_mask = None
        if name == "text":
            lengths = torch.tensor([9, 4, 1, 6, 2])
            token_mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
        out[name] = Encoded(pooled, tokens, mask, token_mask)
    return out


# row 0: all present; row 1: image missing; row 2: only tabular; row 3: all missing; row 4: only text
MASKS = {
    "image": [True, False, False, False, False],
    "audio": [True, True, False, False, False],
    "text": [True, True, False, False, True],
    "tabular": [True, True, True, False, False],
}


def make_fusion(name: str, **params):
    torch.manual_seed(0)
    inputs = [FusionInput(n, d) for n, d, _ in MODS]
    return build_fusion(name, inputs, DIM, 0.1, {"heads": 2, **params} if name in HEADED else params)


def test_registered():
    for name in NAMES:
        assert name in FUSIONS
        assert FUSIONS.get(name).__doc__.strip()


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_finite_with_missing_rows(name):
    fusion = make_fusion(name)
    for mode in (fusion.train, fusion.eval):
        mode()
        out = fusion(make_encoded(MASKS))
        assert out.shape == (B, DIM)
        assert torch.isfinite(out).all()
    # every modality absent in every row
    none = {k: [False] * B for k in MASKS}
    fusion.train()
    enc = make_encoded(none, grad=True)
    out = fusion(enc)
    assert out.shape == (B, DIM) and torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in fusion.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_modality_input(name):
    fusion = make_fusion(name).train()
    enc = make_encoded(MASKS, grad=True)
    # a weighted sum: a plain sum through a final LayerNorm has (almost) zero gradient
    weights = torch.randn(B, DIM, generator=torch.Generator().manual_seed(3))
    (fusion(enc) * weights).sum().backward()
    for mod, e in enc.items():
        g = e.tokens.grad if name in ("transformer", "film") else e.pooled.grad
        assert g is not None and g.abs().sum() > 0, mod
        # absent rows receive no gradient: their placeholder values are never used
        absent = ~e.mask
        assert (g[absent] == 0).all(), mod


@pytest.mark.parametrize("name", NAMES)
def test_absent_modality_inputs_do_not_matter(name):
    fusion = make_fusion(name).eval()
    enc = make_encoded(MASKS, seed=0)
    other = make_encoded(MASKS, seed=1)
    changed = {}
    for mod, e in enc.items():
        o = other[mod]
        keep = e.mask.view(-1, 1)
        pooled = torch.where(keep, e.pooled, o.pooled * 100)
        tokens = torch.where(keep.unsqueeze(-1), e.tokens, o.tokens * 100)
        if e.token_mask is not None:  # padding tokens of present rows are also free to change
            tokens = torch.where(e.token_mask.unsqueeze(-1), tokens, o.tokens * 100)
        changed[mod] = Encoded(pooled, tokens, e.mask, e.token_mask)
    with torch.no_grad():
        before, after = fusion(enc), fusion(changed)
    torch.testing.assert_close(before, after, rtol=1e-5, atol=1e-5)
    # while changing a PRESENT modality does change the rows that have it
    row0 = dict(enc)
    row0["audio"] = Encoded(other["audio"].pooled, other["audio"].tokens, enc["audio"].mask)
    with torch.no_grad():
        moved = fusion(row0)
    assert not torch.allclose(before[0], moved[0])
    torch.testing.assert_close(before[2:], moved[2:], rtol=1e-5, atol=1e-5)  # rows 2-4 lack audio


def test_bad_heads_is_config_error():
    inputs = [FusionInput("a", 4)]
    for name in ("attention", "transformer"):
        with pytest.raises(ConfigError, match="divisible"):
            build_fusion(name, inputs, 10, 0.0, {"heads": 3})
        with pytest.raises(ConfigError, match=name):
            build_fusion(name, inputs, 8, 0.0, {"bogus": 1})
    with pytest.raises(ConfigError, match="graph"):
        build_fusion("graph", inputs, 8, 0.0, {"steps": 0})


@pytest.mark.parametrize("name", ["transformer", "film"])
def test_max_tokens_caps_sequence(name):
    fusion = make_fusion(name, max_tokens=2).eval()
    enc = make_encoded(MASKS)
    changed = {k: Encoded(e.pooled, e.tokens.clone(), e.mask, e.token_mask) for k, e in enc.items()}
    changed["audio"].tokens[:, 2:] = 1e3  # beyond the cap: ignored
    with torch.no_grad():
        torch.testing.assert_close(fusion(enc), fusion(changed))


@pytest.mark.parametrize("heads", [0, 3])
def test_film_attention_pooling_heads(heads):
    fusion = make_fusion("film", heads=heads).eval()
    assert (fusion.score is None) == (heads == 0)
    readout = fusion.out[1].in_features
    assert readout == ((2 + heads) * len(MODS) + 1) * DIM
    with torch.no_grad():
        out = fusion(make_encoded(MASKS))
    assert out.shape == (B, DIM) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["transformer", "graph", "film"])
def test_end_to_end_fit(train_csv, test_csv, name):
    raw = tiny_config(max_epochs=1)
    raw["fusion"] = {"dim": 16, "name": name}
    pred = Predictor("label", config=raw, verbose=False, seed=0).fit(train_csv)
    proba = pred.predict_proba(test_csv)
    assert len(proba) == 30
    assert np.isfinite(proba.to_numpy(dtype="float64")).all()
