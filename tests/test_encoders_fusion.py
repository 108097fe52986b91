"""Encoders (every registered one) and every fusion, on real processed batches from the tiny table."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import real_batch, tiny_config

from polymodal.encoders import Encoded, build_encoder
from polymodal.fusion import FusionInput, build_fusion
from polymodal.model import build_model
from polymodal.registry import ENCODERS, FUSIONS
from polymodal.tasks import build_task

SMALL_PARAMS = {
    "image_cnn": {"width": 8, "dim": 16, "stages": 2},
    "audio_cnn": {"width": 8, "dim": 16, "stages": 2},
    "text_rnn": {"hidden": 8, "embedding_dim": 8, "dim": 16},
    "text_transformer": {"dim": 16, "heads": 2, "layers": 1},
    "tabular_mlp": {"hidden": 16, "dim": 16},
}
B = 6


@pytest.fixture(scope="module")
def setup(train_csv, data_dir):
    return real_batch(train_csv, data_dir, B)


def test_every_registered_encoder_is_covered():
    from test_timeseries import TS_SMALL_PARAMS  # time-series encoders run on their own table there

    from polymodal.encoders.hf import HFEncoder

    scratch = {n for n in ENCODERS.names() if not issubclass(ENCODERS.get(n), HFEncoder)}
    covered = set(SMALL_PARAMS) | set(TS_SMALL_PARAMS) | {"video_cnn"}  # video_cnn: its own clips in test_video.py
    assert scratch <= covered, "add new encoders to SMALL_PARAMS (pretrained ones: test_hf_encoders.py)"


@pytest.mark.parametrize("name", sorted(SMALL_PARAMS))
def test_encoder_shapes_and_absent_rows(setup, name):
    _, _, modalities, procs, batch = setup
    cls = ENCODERS.get(name)
    (m,) = [m for m in modalities if m.kind in cls.kinds]
    torch.manual_seed(0)
    enc = build_encoder(name, SMALL_PARAMS[name], m, procs[m.name]).eval()
    mask = batch.masks[m.name]
    with torch.no_grad():
        out = enc(batch.inputs, mask)
    assert isinstance(out, Encoded)
    assert out.pooled.shape == (B, 16) and enc.dim == 16
    assert out.tokens is not None and out.tokens.dim() == 3
    assert out.tokens.shape[0] == B and out.tokens.shape[2] == 16 and out.tokens.shape[1] >= 1
    assert out.mask.shape == (B,) and out.mask.dtype == torch.bool
    assert torch.equal(out.mask, mask)
    if out.token_mask is not None:
        assert out.token_mask.shape == out.tokens.shape[:2]
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    absent = ~mask
    if m.kind != "tabular":
        assert absent.any(), "fixture must have absent rows for this modality"
    assert (out.pooled[absent] == 0).all()
    assert (out.tokens[absent] == 0).all()
    assert (out.pooled[mask].abs().sum(1) > 0).all()


def test_encoder_sees_only_its_own_columns(setup):
    _, _, modalities, procs, batch = setup
    (m,) = [m for m in modalities if m.kind == "tabular"]
    enc = build_encoder("tabular_mlp", SMALL_PARAMS["tabular_mlp"], m, procs[m.name])
    assert set(enc.inputs_of(batch.inputs)) == {"tabular.numeric", "tabular.category"}


def test_encoder_kind_mismatch_is_config_error(setup):
    from polymodal.errors import ConfigError

    _, _, modalities, procs, _ = setup
    (m,) = [m for m in modalities if m.kind == "text"]
    with pytest.raises(ConfigError, match="image_cnn.*text"):
        build_encoder("image_cnn", {}, m, procs[m.name])


def test_encoder_bad_params_is_config_error(setup):
    from polymodal.errors import ConfigError

    _, _, modalities, procs, _ = setup
    (m,) = [m for m in modalities if m.kind == "text"]
    with pytest.raises(ConfigError, match="text_rnn"):
        build_encoder("text_rnn", {"no_such_param": 1}, m, procs[m.name])


@pytest.fixture
def model(setup):
    cfg, _, modalities, procs, _batch = setup
    task = build_task("binary", cfg.task)
    task.fit_target(pd.Series(["no", "yes"]))
    torch.manual_seed(0)
    return build_model(cfg, modalities, procs, task)


def test_concat_fusion_output_shape(model, setup):
    *_, batch = setup
    model.eval()
    with torch.no_grad():
        fused = model.fusion(model.encode(batch.inputs, batch.masks))
        logits = model(batch.inputs, batch.masks)
    assert fused.shape == (B, 32)
    assert logits.shape == (B, 2)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_every_fusion_on_a_real_model(setup, name):
    """Output shape, finite outputs with some and with all modalities missing, gradient to every encoder."""
    from polymodal.config import PolymodalConfig

    _, _, modalities, procs, batch = setup
    raw = tiny_config()
    raw["fusion"] = {"name": name, "dim": 16}
    cfg = PolymodalConfig.from_any(raw)
    task = build_task("binary", cfg.task)
    task.fit_target(pd.Series(["no", "yes"]))
    torch.manual_seed(0)
    model = build_model(cfg, modalities, procs, task)
    assert isinstance(model.head, torch.nn.Identity) == FUSIONS.get(name).decides
    assert not batch.masks["image"][0] and batch.masks["audio"][0]  # row 0: one modality missing
    assert [bool(batch.masks[m][1]) for m in ("image", "audio", "text", "tabular")] == [False, False, False, True]
    none = {k: torch.zeros_like(v) for k, v in batch.masks.items()}
    model.eval()
    with torch.no_grad():
        out, empty = model(batch.inputs, batch.masks), model(batch.inputs, none)
    assert out.shape == (B, 2) and torch.isfinite(out).all() and torch.isfinite(empty).all()
    model.train()
    target = torch.tensor([0, 1] * (B // 2))
    model.loss(model(batch.inputs, batch.masks), target, task).backward()
    for enc_name, enc in model.encoders.items():
        grads = [p.grad for p in enc.parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), enc_name


def test_learned_missing_vector_is_used(model, setup):
    *_, batch = setup
    model.eval()
    encoded = model.encode(batch.inputs, batch.masks)
    with torch.no_grad():
        before = model.fusion(encoded)
        model.fusion.missing.vectors["image"].add_(torch.randn(16))
        after = model.fusion(encoded)
    image_absent = ~batch.masks["image"]
    assert not torch.allclose(before[image_absent], after[image_absent])  # absent rows read the vector
    assert torch.equal(before[~image_absent], after[~image_absent])  # present rows do not
    # and the vector receives gradient from rows that lack the modality
    model.zero_grad()
    model.fusion(model.encode(batch.inputs, batch.masks)).sum().backward()
    assert model.fusion.missing.vectors["image"].grad.abs().sum() > 0


def test_fusion_registry_and_unknown_fusion():
    from polymodal.errors import ConfigError

    assert "concat" in FUSIONS
    with pytest.raises(ConfigError) as e:
        build_fusion("nope", [FusionInput("a", 4)], 8, 0.0, {})
    assert "concat" in str(e.value)
    with pytest.raises(ConfigError, match="concat"):
        build_fusion("concat", [FusionInput("a", 4)], 8, 0.0, {"bogus": 1})


@pytest.mark.parametrize("name", ["image_cnn", "audio_cnn"])
@pytest.mark.parametrize("option", [None, "coords", "positions"])
def test_conv_position_options_make_tokens_know_their_position(setup, name, option):
    """A blank input gives every token the same vector, unless coordinate channels (CoordConv) or position codes
    are added; absent rows stay zero either way."""
    _, _, modalities, procs, batch = setup
    (m,) = [m for m in modalities if m.kind in ENCODERS.get(name).kinds]
    torch.manual_seed(0)
    params = {**SMALL_PARAMS[name], **({option: True} if option else {})}
    enc = build_encoder(name, params, m, procs[m.name]).eval()
    assert enc.trunk.net[0].in_channels == (procs[m.name].channels if name == "image_cnn" else 1) + 2 * (
        option == "coords"
    )
    inputs = {**batch.inputs, m.name: torch.zeros_like(batch.inputs[m.name])}
    mask = torch.ones(B, dtype=torch.bool)
    mask[0] = False
    with torch.no_grad():
        tokens = enc(inputs, mask).tokens
    assert (tokens[0] == 0).all()
    spread = (tokens[1:] - tokens[1:, :1]).abs().amax().item()
    assert (spread > 1e-3) if option else (spread < 1e-6)


def test_sincos_2d_codes_every_cell_apart():
    from polymodal.encoders.base import sincos_2d

    for h, w, dim in ((6, 6, 128), (1, 20, 16), (3, 5, 18)):
        code = sincos_2d(h, w, dim)
        assert code.shape == (h * w, dim) and torch.isfinite(code).all()
        assert torch.cdist(code, code).add(torch.eye(h * w) * 1e3).min() > 0.1  # no two cells share a code
        assert (code[:, 4 * (dim // 4) :] == 0).all()  # features beyond a multiple of 4 are padding
    code = sincos_2d(3, 3, 16).view(3, 3, 16)
    torch.testing.assert_close(code[0, :, :8], code[0, :1, :8].expand(3, 8))  # first half: the row only
    torch.testing.assert_close(code[:, 0, 8:], code[:1, 0, 8:].expand(3, 8))  # second half: the column only
