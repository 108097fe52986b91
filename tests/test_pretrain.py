"""Self-supervised pre-training (problem_type pretrain, `polymodal pretrain`) and fits started from it
(training.init, `fit --init`): the run is saved, the weights and processors carry over, mismatches are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_table, tiny_config

from polymodal import Predictor
from polymodal.config import PolymodalConfig
from polymodal.errors import ConfigError
from polymodal.fitting import build, fit_processors, fit_schema, read_labelled, resolve_task
from polymodal.pipeline import FittedPipeline, label_values
from polymodal.tasks.pretrain import contrastive_loss, masked_loss

# image + text (+ the tabular reading/region): a few seconds per fit on one thread
COLUMNS = {"audio": "ignore"}


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return make_table(tmp_path_factory.mktemp("pre-data"), 48, seed=3, prefix="p_", missing_rate=0.05)


@pytest.fixture(scope="module")
def run(table, tmp_path_factory) -> Path:
    cfg = {**tiny_config(max_epochs=2), "columns": COLUMNS}
    out = tmp_path_factory.mktemp("pre-runs") / "pre"
    p = Predictor.pretrain(table, out, config=cfg, ignore=["label"], verbose=False)
    assert p.pipeline is not None and p.pipeline.problem_type == "pretrain"
    return out


def test_pretrain_saves_encoders_and_processors_without_pickle(run):
    assert (run / "model.safetensors").is_file() and (run / "processors.json").is_file()
    assert not [f for f in run.rglob("*") if f.suffix in (".bin", ".pt", ".pkl", ".pickle")]
    pre = FittedPipeline.load(run, verbose=False)
    assert pre.problem_type == "pretrain"
    assert sorted(pre.model.encoders) == sorted(m.name for m in pre.modalities) == ["image", "tabular", "text"]
    assert "label" not in pre.schema.input_columns()  # ignored: the labels are not used
    v = pre.fit_result.validation
    assert {"val_mrr", "val_recall@1", "val_masked_cosine"} <= set(v) and 0 < v["val_mrr"] <= 1


def _labelled_steps(table: Path, cfg: PolymodalConfig):
    t = read_labelled(table, "label", None)
    schema = fit_schema(t.frame, "label", cfg)
    task = resolve_task(cfg, label_values(t.frame, "label"), schema)
    modalities, processors = fit_processors(schema, cfg, t)
    return modalities, processors, task


def test_init_starts_the_encoders_from_the_pretrained_weights(run, table):
    cfg = PolymodalConfig.from_any({**tiny_config(max_epochs=1), "columns": COLUMNS})
    cfg.training.init = str(run)
    modalities, processors, task = _labelled_steps(table, cfg)
    pre = FittedPipeline.load(run, verbose=False)
    # the fit reuses the pre-training processors' state: the text vocabulary, the tabular normalisation
    for name in ("text", "tabular", "image"):
        assert processors[name].state() == pre.processors[name].state()
    torch.manual_seed(123)
    model = build(cfg, modalities, processors, task)
    for name in ("image", "text", "tabular"):
        mine, theirs = model.encoders[name].state_dict(), pre.model.encoders[name].state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    # without init the same build draws other weights: the equality above is the init's doing
    cfg.training.init = None
    fresh = build(cfg, modalities, processors, task).encoders["image"].state_dict()
    k = next(k for k, v in fresh.items() if v.is_floating_point() and v.numel() > 1)
    assert not torch.equal(fresh[k], model.encoders["image"].state_dict()[k])


def test_fit_with_init_trains_and_predicts(run, table):
    p = Predictor(
        "label", config={**tiny_config(max_epochs=1), "columns": COLUMNS}, init=run, preset="fast", verbose=False
    )
    proba = p.fit(table).predict_proba(table)
    assert np.isfinite(proba.to_numpy()).all()
    assert p.get_params()["init"] == run and p.pipeline.config.training.init == str(run)


def test_init_lr_scale_zero_freezes_the_pretrained_encoders(run, table):
    cfg = {**tiny_config(max_epochs=1), "columns": COLUMNS}
    cfg["training"] = {**cfg["training"], "init_lr_scale": 0.0}
    p = Predictor("label", config=cfg, init=run, preset="fast", verbose=False).fit(table)
    pre = FittedPipeline.load(run, verbose=False)
    for name in ("image", "text", "tabular"):
        theirs = dict(pre.model.encoders[name].named_parameters())
        for k, v in p.model.encoders[name].named_parameters():
            assert torch.equal(v, theirs[k]), (name, k)
    head = next(v for k, v in p.model.named_parameters() if not k.startswith("encoders."))
    assert head.requires_grad  # the rest of the network trains


def test_a_different_encoder_setting_is_refused_naming_the_column(run, table):
    cfg = {**tiny_config(max_epochs=1), "columns": COLUMNS}
    cfg["encoders"] = {**cfg["encoders"], "text": {**cfg["encoders"]["text"], "hidden": 8}}
    with pytest.raises(ConfigError, match=r"'text': encoder 'text_rnn'; settings that differ: hidden \(8 vs 16\)"):
        Predictor("label", config=cfg, init=run, preset="fast", verbose=False).fit(table)


def test_a_table_sharing_no_modality_is_refused(run, table, tmp_path):
    cfg = {**tiny_config(max_epochs=1), "columns": {"image": "ignore", "text": "ignore", "reading": "ignore"}}
    cfg["columns"]["region"] = "ignore"
    with pytest.raises(ConfigError, match="shares no modality"):
        Predictor("label", config=cfg, init=run, preset="fast", verbose=False).fit(table)
    with pytest.raises(ConfigError, match="not a run directory"):
        Predictor("label", config=tiny_config(), init=tmp_path / "nothing", preset="fast", verbose=False).fit(table)


def test_pretrain_needs_two_modalities(table):
    frame = pd.read_csv(table)[["text", "label"]]
    with pytest.raises(ConfigError, match="at least two input columns"):
        Predictor.pretrain(frame, config=tiny_config(), ignore=["label"], verbose=False)


def test_losses_reward_aligned_modalities():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(16, 2, 8), dim=-1)
    aligned = torch.stack([torch.stack([z[:, 0], z[:, 0]], 1) * 3, torch.zeros(16, 2, 8)], 1)
    shuffled = torch.stack([z * 3, torch.zeros(16, 2, 8)], 1)
    assert contrastive_loss(aligned) < contrastive_loss(shuffled)
    # a perfect prediction of each (gradient-stopped) embedding costs nothing; an opposite one costs 2
    perfect = torch.stack([z * 3, z], 1)
    assert masked_loss(perfect).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_loss(torch.stack([z * 3, -z], 1)).item() == pytest.approx(2.0, abs=1e-5)


def test_cli_pretrain_then_fit_init(table, tmp_path, cli):
    import yaml

    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({**tiny_config(max_epochs=1), "columns": COLUMNS}), encoding="utf-8")
    r = cli("pretrain", table, "--out", tmp_path / "pre", "--config", config, "--ignore", "label", "--quiet")
    assert r.exit_code == 0, r.output
    assert "saved to" in r.stdout and (tmp_path / "pre" / "model.safetensors").is_file()
    r = cli(
        "fit",
        table,
        "--label",
        "label",
        "--out",
        tmp_path / "run",
        "--config",
        config,
        "--init",
        tmp_path / "pre",
        "--preset",
        "fast",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    assert PolymodalConfig.from_any(tmp_path / "run" / "config.yaml").training.init == str(tmp_path / "pre")


def test_cli_help_names_the_options(cli):
    assert "--ignore" in cli("pretrain", "--help").stdout
    assert "--init" in cli("fit", "--help").stdout
    help_text = cli("zero-shot", "--help").stdout
    assert "--labels" in help_text and "--prompt" in help_text
