"""Pretrained (Hugging Face) encoders on tiny models built in-process: every kind trains, predicts, saves and loads
offline; the Encoded contract; pooling; modes and their learning-rate groups; helpful errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import hf_tiny
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_table, tiny_config
from PIL import Image

from polymodal import Predictor
from polymodal.config import PolymodalConfig
from polymodal.data.dataset import Collator, prepare
from polymodal.data.processors import LoadContext, build_processors
from polymodal.encoders import Encoded, build_encoder
from polymodal.encoders.hf import HFEncoder
from polymodal.errors import ConfigError
from polymodal.registry import ENCODERS
from polymodal.rundir import read_weights
from polymodal.schema import infer_schema
from polymodal.training.module import param_groups

# (encoder, tiny model, modality column)
CASES = [
    ("hf_text", "bert", "text"),
    ("hf_image", "vit", "image"),
    ("hf_image", "resnet", "image"),
    ("clip_text", "clip", "text"),
    ("clip_image", "clip", "image"),
    ("hf_audio", "wav2vec2", "audio"),
    ("hf_audio", "whisper", "audio"),
]
IDS = [f"{e}-{m}" for e, m, _ in CASES]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-models")
    return {k: hf_tiny.build(k, root / k) for k in hf_tiny.KINDS}


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """40 rows with a few absent cells in every column."""
    return make_table(tmp_path_factory.mktemp("hf-data"), 40, seed=5, prefix="h_", missing_rate=0.1)


def hf_config(encoder: str, model: Path, column: str, **params) -> dict:
    cfg = tiny_config(max_epochs=2)
    cfg["encoders"][column] = {"name": encoder, "model": str(model), "dim": 16, **params}
    return cfg


def test_every_pretrained_encoder_is_covered():
    pretrained = {n for n in ENCODERS.names() if issubclass(ENCODERS.get(n), HFEncoder)}
    assert pretrained == {e for e, _, _ in CASES} | {"hf_video"}  # hf_video: on its own clips in test_video.py


@pytest.mark.parametrize("encoder,kind,column", CASES, ids=IDS)
def test_trains_predicts_and_reloads_offline(encoder, kind, column, models, table, tmp_path):
    model_dir = shutil.copytree(models[kind], tmp_path / "model")
    p = Predictor("label", config=hf_config(encoder, model_dir, column), verbose=False, preset="fast").fit(table)
    proba = p.predict_proba(table)
    assert len(proba) == 40 and np.isfinite(proba.to_numpy()).all()
    run = p.save(tmp_path / "run")

    # The run holds the backbone's weights (safetensors) and its preprocessing files; no pickle anywhere.
    weights = read_weights(run / "model.safetensors")
    assert any(k.startswith(f"encoders.{column}.backbone.") for k in weights)
    assert (run / "backbones" / column / "config.json").is_file()
    assert not [f for f in run.rglob("*") if f.suffix in (".bin", ".pt", ".pkl", ".pickle")]

    shutil.rmtree(model_dir)  # the original checkpoint is gone: loading must need the run directory only
    q = Predictor.load(run, verbose=False)
    assert np.allclose(q.predict_proba(table).to_numpy(), proba.to_numpy(), atol=1e-5)
    assert q.processors[column].source == str(model_dir)  # remembered, not needed


# --------------------------------------------------------------------------------------- the encoder contract
def _batch(table: Path, encoder: str, model: Path, column: str, n: int = 6, **params):
    frame = pd.read_csv(table)
    part = frame.iloc[:n].copy()
    part.loc[part.index[0], column] = None  # one absent row
    cfg = PolymodalConfig.from_any(hf_config(encoder, model, column, **params))
    schema = infer_schema(frame, "label")
    modalities, procs = build_processors(schema, cfg)
    ctx = LoadContext(table.parent.resolve(), cfg.limits)
    for p in procs.values():
        p.fit(frame, ctx)
    batch = Collator(prepare(part, procs, ctx, progress=False), procs, False, torch.long)(list(range(n)))
    (m,) = [m for m in modalities if m.name == column]
    torch.manual_seed(0)
    enc = build_encoder(encoder, cfg.encoders[m.kind].params(), m, procs[column])
    return enc, batch


@pytest.mark.parametrize("encoder,kind,column", CASES, ids=IDS)
def test_encoded_contract(encoder, kind, column, models, table):
    enc, batch = _batch(table, encoder, models[kind], column)
    mask = batch.masks[column]
    assert not mask[0] and mask[1:].any()
    out = enc.eval()(batch.inputs, mask)
    assert isinstance(out, Encoded)
    assert out.pooled.shape == (6, 16) and out.tokens.shape[0] == 6 and out.tokens.shape[2] == 16
    assert torch.equal(out.mask, mask)
    if out.token_mask is not None:
        assert out.token_mask.shape == out.tokens.shape[:2] and not out.token_mask[0].any()
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    assert (out.pooled[~mask] == 0).all() and (out.tokens[~mask] == 0).all()
    assert (out.pooled[mask].abs().sum(1) > 0).all()


@pytest.mark.parametrize("pooling", ["cls", "mean", "attention", "pooler"])
def test_pooling_options(pooling, models, table):
    enc, batch = _batch(table, "hf_text", models["bert"], "text", pooling=pooling)
    out = enc.eval()(batch.inputs, batch.masks["text"])
    assert out.pooled.shape == (6, 16) and torch.isfinite(out.pooled).all()


def test_pooler_without_pooled_output_says_what_to_use(models, table):
    enc, batch = _batch(table, "hf_audio", models["wav2vec2"], "audio", pooling="pooler")
    with pytest.raises(ConfigError, match="pooling 'mean'"):
        enc(batch.inputs, batch.masks["audio"])


def test_image_preprocessing_matches_the_image_processor(models, tmp_path):
    """Resize/crop once to uint8, normalise per batch: the same pixels as the model's own image processor."""
    from polymodal.encoders.hf_hub import load_preprocessor

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    frame = pd.DataFrame({"image": ["a.png"] * 4, "label": ["x", "y"] * 2})
    for kind in ("vit", "resnet", "clip"):
        cfg = PolymodalConfig.from_any({"encoders": {"image": {"name": "hf_image", "model": str(models[kind])}}})
        _, procs = build_processors(infer_schema(frame, "label"), cfg)
        proc, ctx = procs["image"], LoadContext(tmp_path, cfg.limits)
        proc.fit(frame, ctx)
        ours = proc.collate([proc.load("a.png", ctx)], False)["image.pixel_values"]
        theirs = load_preprocessor("image", models[kind])(
            images=[Image.open(tmp_path / "a.png").convert("RGB")], return_tensors="pt"
        )["pixel_values"]
        assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-5), kind


# ------------------------------------------------------------------------------------------- modes and lrs
def test_frozen_backbone_is_not_trained_and_stays_in_eval(models, table):
    enc, _ = _batch(table, "hf_text", models["bert"], "text")
    assert not any(p.requires_grad for p in enc.backbone.parameters())
    enc.train()
    assert not enc.backbone.training and enc.proj.training
    assert enc.lr_scales() == {}


def test_finetune_trains_the_backbone_with_layerwise_decay(models, table):
    enc, batch = _batch(table, "hf_text", models["bert"], "text", mode="finetune", backbone_lr=0.1, layer_decay=0.5)
    enc.train()
    assert enc.backbone.training
    enc(batch.inputs, batch.masks["text"]).pooled.sum().backward()
    assert enc.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    scales = enc.lr_scales()
    # two blocks: embeddings depth 0, block i depth i + 1, pooler on top (depth 3)
    assert scales["backbone.embeddings.word_embeddings.weight"] == pytest.approx(0.1 * 0.5**3)
    assert scales["backbone.encoder.layer.0.output.dense.weight"] == pytest.approx(0.1 * 0.5**2)
    assert scales["backbone.encoder.layer.1.output.dense.weight"] == pytest.approx(0.1 * 0.5)
    assert scales["backbone.pooler.dense.weight"] == pytest.approx(0.1)
    assert "proj.weight" not in scales  # the head trains at the base rate


def test_last_n_trains_only_the_top_blocks(models, table):
    enc, _ = _batch(table, "hf_text", models["bert"], "text", mode="last_n", last_n=1)
    trainable = {n for n, p in enc.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("encoder.layer.1.", "pooler.")) for n in trainable)
    assert set(enc.lr_scales()) == {f"backbone.{n}" for n in trainable}


def test_param_groups_apply_the_multipliers(models, table, fitted):
    # a from-scratch model: the two groups it always had, every parameter at the base rate
    groups = param_groups(fitted.model, 1e-3, 0.01)
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(1e-3, 0.01), (1e-3, 0.0)]
    assert sum(len(g["params"]) for g in groups) == len(list(fitted.model.parameters()))
    # a fine-tuned backbone: one group per (multiplier, decay), frozen parameters left out
    model_dir = models["bert"]
    p = Predictor(
        "label",
        config=hf_config("hf_text", model_dir, "text", mode="last_n", last_n=1, backbone_lr=0.5, layer_decay=0.5),
        verbose=False,
        preset="fast",
    )
    p.config.training.max_epochs = 1
    p.fit(table)
    groups = param_groups(p.model, 1e-3, 0.01)
    lrs = sorted({g["lr"] for g in groups})
    assert lrs == pytest.approx([1e-3 * 0.5 * 0.5, 1e-3 * 0.5, 1e-3])
    n_trainable = sum(1 for q in p.model.parameters() if q.requires_grad)
    assert sum(len(g["params"]) for g in groups) == n_trainable < len(list(p.model.parameters()))


def test_finetune_end_to_end_changes_and_saves_the_backbone(models, table, tmp_path):
    p = Predictor(
        "label",
        config=hf_config("hf_image", models["vit"], "image", mode="finetune", backbone_lr=1.0),
        verbose=False,
        preset="fast",
    ).fit(table)
    from polymodal.encoders.hf_hub import load_model

    original = load_model(models["vit"]).state_dict()
    tuned = p.model.encoders["image"].backbone.state_dict()
    assert any(not torch.equal(original[k], tuned[k]) for k in original)
    q = Predictor.load(p.save(tmp_path / "run"), verbose=False)
    assert np.allclose(q.predict_proba(table).to_numpy(), p.predict_proba(table).to_numpy(), atol=1e-5)


def test_token_sequences_feed_a_cross_modal_fusion(models, table):
    cfg = hf_config("hf_text", models["bert"], "text")
    cfg["encoders"]["image"] = {"name": "hf_image", "model": str(models["vit"]), "dim": 16}
    cfg["fusion"] = {"name": "transformer", "dim": 32}
    p = Predictor("label", config=cfg, ignore=["audio"], verbose=False, preset="fast").fit(table)
    assert len(p.predict(table)) == 40


# ----------------------------------------------------------------------------------------------- errors
def test_missing_model_is_a_config_error_that_says_what_to_do(table, tmp_path):
    cfg = hf_config("hf_text", tmp_path / "no-such-model", "text")
    with pytest.raises(ConfigError, match="cannot load .* pretrained model .*local folder"):
        Predictor("label", config=cfg, verbose=False, preset="fast").fit(table)


def test_clip_encoder_on_a_single_tower_model_says_use_hf(models, table):
    with pytest.raises(ConfigError, match="use hf_text"):
        _batch(table, "clip_text", models["bert"], "text")


def test_bad_encoder_parameter_is_a_config_error(models):
    # refused when the Predictor is made, before any table is read: the path, the choices and the value
    with pytest.raises(ConfigError, match=r"encoders\.text\.mode: expected one of .*'sideways'"):
        Predictor(
            "label", config=hf_config("hf_text", models["bert"], "text", mode="sideways"), verbose=False, preset="fast"
        )


def test_best_epoch_snapshot_copies_a_frozen_backbone_once():
    from polymodal.training.callbacks import BestState

    m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2), torch.nn.Linear(2, 2))
    m[2].requires_grad_(False)  # the "frozen backbone"
    best = BestState("val_accuracy", "max", 3)
    s1 = best._snapshot(m)
    with torch.no_grad():
        m[0].weight.add_(1)
    m(torch.randn(4, 2))  # training-mode batch norm updates its running statistics
    s2 = best._snapshot(m)
    assert s2["2.weight"] is s1["2.weight"]  # frozen: the same copy
    assert not torch.equal(s2["0.weight"], s1["0.weight"])  # trained: copied again
    assert not torch.equal(s2["1.running_mean"], s1["1.running_mean"])  # buffers: always copied
    with torch.no_grad():
        m[2].weight.mul_(2)  # even a frozen tensor changed in place is noticed
    assert torch.equal(best._snapshot(m)["2.weight"], s2["2.weight"] * 2)
