"""Robust fusion: corruption augmentation in training, the quality-aware 'dynamic' fusion, the robust preset and the
robustness sweep's "best model without this modality" reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import real_batch, tiny_config

from polymodal import Predictor
from polymodal.config import PolymodalConfig
from polymodal.data.corruption_augmentation import CorruptionAugmenter
from polymodal.data.dataset import Collator
from polymodal.errors import ConfigError
from polymodal.evaluation.robustness import RobustnessReport
from polymodal.model import build_model
from polymodal.presets import apply_preset
from polymodal.reporting import report
from polymodal.tasks import build_task

B = 6


@pytest.fixture(scope="module")
def setup(train_csv, data_dir):
    return real_batch(train_csv, data_dir, B)


def _prepared(train_csv, data_dir, procs, n=B):
    from polymodal.data.dataset import prepare
    from polymodal.data.processors import LoadContext

    cfg = PolymodalConfig.from_any(tiny_config())
    frame = pd.read_csv(train_csv).iloc[:n]
    return prepare(frame, procs, LoadContext(data_dir.resolve(), cfg.limits), progress=False)


# ---------------------------------------------------------------------------------------- corruption augmentation
def test_augmentation_changes_training_batches_only(setup, train_csv, data_dir):
    _, _, _, procs, _ = setup
    prepared = _prepared(train_csv, data_dir, procs)
    aug = CorruptionAugmenter.build(procs, 1.0, ["gaussian_noise", "white_noise"])
    assert aug is not None and set(aug.choices) == {"image", "audio"}  # text and tabular: nothing applies
    idx = list(range(B))
    torch.manual_seed(0)
    clean = Collator(prepared, procs, False, torch.long)(idx)
    val = Collator(prepared, procs, False, torch.long, aug)(idx)  # validation/test collators never corrupt
    train = Collator(prepared, procs, True, torch.long, aug)(idx)
    train_plain = Collator(prepared, procs, True, torch.long)(idx)
    for k in clean.inputs:
        assert torch.equal(clean.inputs[k], val.inputs[k]), k
    image_keys = [k for k in clean.inputs if k.startswith("image")]
    audio_keys = [k for k in clean.inputs if k.startswith("audio")]
    text_keys = [k for k in clean.inputs if k.startswith("text")]
    assert any(not torch.equal(train.inputs[k], train_plain.inputs[k]) for k in image_keys)
    assert any(not torch.equal(train.inputs[k], train_plain.inputs[k]) for k in audio_keys)
    assert all(torch.equal(train.inputs[k], train_plain.inputs[k]) for k in text_keys)
    # the stored items themselves are never written to
    again = Collator(prepared, procs, False, torch.long)(idx)
    assert all(torch.equal(clean.inputs[k], again.inputs[k]) for k in clean.inputs)


def test_augmentation_probability_levels_and_bad_names(setup, train_csv, data_dir):
    _, _, _, procs, _ = setup
    assert CorruptionAugmenter.build(procs, 0.0) is None  # off: no augmenter at all
    aug = CorruptionAugmenter.build(procs, 0.5, ["white_noise"], max_severity=0.4)
    assert aug is not None
    (choice,) = aug.choices["audio"]
    assert choice.levels == (20.0, 10.0)  # the first 40% of the default levels: the milder ones
    items = _prepared(train_csv, data_dir, procs, 40).column("audio")
    out = aug.apply("audio", items, np.random.default_rng(0))
    changed = sum(a is not None and not np.array_equal(a, b) for a, b in zip(items, out))
    present = sum(a is not None for a in items)
    assert 0 < changed < present  # about half the rows
    with pytest.raises(ConfigError, match="unknown corruption|choices|nope"):
        CorruptionAugmenter.build(procs, 0.5, ["nope"])
    with pytest.raises(ConfigError, match="apply to none"):
        CorruptionAugmenter.build(procs, 0.5, ["frame_drop"])


def test_augmentation_config_is_typed():
    cfg = PolymodalConfig.from_any({"training": {"corruption_augmentation": {"probability": 0.3}}})
    assert cfg.training.corruption_augmentation.probability == 0.3
    assert cfg.training.corruption_augmentation.kinds is None
    with pytest.raises(ConfigError):
        PolymodalConfig.from_any({"training": {"corruption_augmentation": {"probability": 1.5}}})


# ----------------------------------------------------------------------------------------------- dynamic fusion
def _dynamic(setup, fusion: dict, text: dict | None = None):
    """(a tiny binary model with this dynamic fusion in training mode, its task, targets for the setup's batch)."""
    _, _, modalities, procs, _ = setup
    raw = tiny_config()
    raw["fusion"] = {"name": "dynamic", "dim": 16, **fusion}
    if text is not None:
        raw["encoders"]["text"] = text
    cfg = PolymodalConfig.from_any(raw)
    task = build_task("binary", cfg.task)
    task.fit_target(pd.Series(["no", "yes"]))
    torch.manual_seed(0)
    model = build_model(cfg, modalities, procs, task)
    model.train()
    return model, task, torch.tensor([0, 1] * (B // 2))


@pytest.mark.parametrize(("text", "joint"), [("text_rnn", False), ("text_transformer", False), ("text_rnn", True)])
def test_dynamic_fusion_weights_sum_to_one_per_row(setup, text, joint):
    batch = setup[4]
    transformer = {"name": "text_transformer", "dim": 16, "heads": 2, "layers": 1}
    model, task, target = _dynamic(setup, {"joint": joint}, transformer if text == "text_transformer" else None)
    loss = model.loss(model(batch.inputs, batch.masks), target, task)
    loss.backward()
    gates = [p.grad for p in model.fusion.gates.parameters()]
    if joint:  # the joint expert (a head on every modality together) and its gate learn too
        gates += [p.grad for p in model.fusion.joint_gate.parameters()]
        gates += [p.grad for p in model.fusion.joint.parameters()]
    else:
        assert model.fusion.joint is None
    assert all(g is not None and g.abs().sum() > 0 for g in gates)  # the reliability gates learn
    model.eval()
    with torch.no_grad():
        w = model.fusion.modality_weights(model.encode(batch.inputs, batch.masks))
    masks = torch.stack([batch.masks[f.name] for f in model.fusion.inputs], 1)
    assert w.shape == masks.shape
    assert torch.allclose(w.sum(1), torch.ones(B), atol=1e-5)
    assert (w[~masks] == 0).all() and (w[masks] > 0).all()


def test_dynamic_independent_experts_learn_from_their_own_losses_only(setup):
    """With independent_experts the fused output's loss trains the gates and the joint head, never an encoder or a
    modality's head: those learn as single-modality models do, from their own heads' losses."""
    batch = setup[4]
    model, task, target = _dynamic(setup, {"joint": True, "independent_experts": True})
    task.loss(model(batch.inputs, batch.masks), target).backward()  # the fused output's loss alone
    untouched = [p for name, p in model.named_parameters() if not name.startswith("fusion.")]
    untouched += list(model.fusion.heads.parameters())
    assert untouched and all(p.grad is None or not p.grad.any() for p in untouched)
    learned = list(model.fusion.gates.parameters()) + list(model.fusion.joint.parameters())
    assert any(p.grad is not None and p.grad.any() for p in learned)
    model.zero_grad()
    model.fusion._last = None
    model.loss(model(batch.inputs, batch.masks), target, task).backward()  # the full loss: the heads' own terms too
    assert all(p.grad is not None and p.grad.any() for p in model.fusion.heads.parameters())


# ----------------------------------------------------------------------- preset, fit, sweep with reference line
def test_robust_preset_fills_defaults_only():
    cfg = PolymodalConfig()
    apply_preset(cfg, "robust", {"image", "audio"})
    assert cfg.fusion.name == "dynamic" and cfg.fusion.params() == {"joint": True, "independent_experts": True}
    assert cfg.training.corruption_augmentation.probability > 0
    mine = PolymodalConfig.from_any({"fusion": {"name": "late"}, "training": {"modality_dropout": 0.4}})
    apply_preset(mine, "robust", {"image", "audio"})
    assert mine.fusion.name == "late" and mine.training.modality_dropout == 0.4  # the config wins


def test_robust_fit_and_sweep_with_reference_line(train_csv, test_csv, tmp_path):
    robust = Predictor("label", config=tiny_config(), verbose=False, seed=0, preset="robust").fit(train_csv)
    assert robust.pipeline.config.fusion.name == "dynamic"
    assert robust.pipeline.config.training.corruption_augmentation.probability > 0
    no_image = tiny_config()
    no_image["ignore"] = ["image"]
    without = Predictor("label", config=no_image, verbose=False, seed=0, preset="fast").fit(train_csv)
    metrics = robust.evaluate(
        test_csv,
        robustness=True,
        corruptions={"gaussian_noise": [0.5]},
        robustness_reference={"image": [without]},
        robustness_out=tmp_path / "rob",
    )
    rep: RobustnessReport = metrics["robustness"]
    ref = without.evaluate(test_csv)["accuracy"]
    assert rep.without("image") == pytest.approx(ref)
    assert math.isnan(rep.without("audio"))
    frame = rep.to_frame()
    line = frame[(frame["modality"] == "image") & (frame["corruption"] == "reference")]
    assert len(line) == 1 and line["accuracy"].iloc[0] == pytest.approx(ref)
    assert rep.summary_frame().query("modality == 'image'")["without"].iloc[0] == pytest.approx(ref)
    assert "best without" in rep.markdown() and "margin" in rep.markdown()
    saved = json.loads((tmp_path / "rob" / "robustness.json").read_text())
    assert RobustnessReport.from_dict(saved).reference == rep.reference
    # per-row fusion weights of a few full rows: clean and damaged, each summing to 1; a missing modality weighs 0
    assert rep.weights and {w.corruption for w in rep.weights} == {"gaussian_noise", "missing"}
    for w in rep.weights:
        assert sum(w.clean.values()) == pytest.approx(1, abs=1e-3)
        assert sum(w.corrupted.values()) == pytest.approx(1, abs=1e-3)
        if w.corruption == "missing":
            assert w.corrupted[w.modality] == 0
    html = report(
        robust,
        test_csv,
        tmp_path / "r.html",
        robustness=tmp_path / "rob" / "robustness.json",
        n_examples=0,
        n_bootstrap=0,
    ).read_text("utf-8")
    section = html[html.index('<section id="robustness"') :]
    section = section[: section.index("</section>")]
    assert "best without" in section and "→" in section
    with pytest.raises(ConfigError, match="must not use image"):
        robust.evaluate(test_csv, robustness=True, corruptions=["occlusion"], robustness_reference={"image": [robust]})


def test_compare_takes_one_network_presets_as_variants(train_csv):
    from polymodal.evaluation.compare import _variants, compare

    frame = pd.read_csv(train_csv)
    variants = _variants(frame, "label", PolymodalConfig(), ["concat"], False, ["robust"])
    assert [(v.name, v.kind, v.preset) for v in variants] == [
        ("fusion: concat", "fusion", None),
        ("preset: robust", "preset", "robust"),
    ]
    with pytest.raises(ConfigError, match="one-network preset"):
        compare(frame, "label", fusions=["concat"], presets=["quality"], verbose=False)
