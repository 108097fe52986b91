"""The generation task end to end on tiny captioning / QA tables: fit, predict strings (+ scores), evaluate,
save → load → identical strings, decoding options, limits and bad inputs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import yaml

from polymodal import Predictor
from polymodal.datasets.scenes import make_captioning
from polymodal.errors import ConfigError, PolymodalError

TINY_GEN = {
    "task": {
        "problem_type": "generation",
        "generation": {"layers": 1, "dim": 32, "heads": 2, "decoding": {"beam_width": 3}},
    },
    "encoders": {
        "image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2},
        "text": {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16},
    },
    "training": {"max_epochs": 2, "batch_size": 16, "learning_rate": 5e-3},
}


def tiny_gen(**generation) -> dict:
    cfg = json.loads(json.dumps(TINY_GEN))
    cfg["task"]["generation"].update(generation)
    return cfg


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    return make_captioning(tmp_path_factory.mktemp("captions"), n_train=60, n_test=16, seed=0)


@pytest.fixture(scope="module")
def captioner(captions) -> Predictor:
    return Predictor("caption", config=tiny_gen(), verbose=False, seed=0).fit(captions.train)


@pytest.fixture(scope="module")
def caption_run(captioner, tmp_path_factory):
    return captioner.save(tmp_path_factory.mktemp("runs") / "captioner")


def test_fit_predict_returns_strings_and_scores(captioner, captions):
    pred = captioner.predict(captions.test)
    assert len(pred) == 16 and pred.name == "caption"
    assert all(isinstance(s, str) for s in pred)
    scored = captioner.predict(captions.test, return_scores=True)
    assert list(scored.columns) == ["caption", "log_prob"]
    assert (scored["caption"] == pred).all()
    assert np.isfinite(scored["log_prob"]).all() and (scored["log_prob"] <= 0).all()
    assert captioner.problem_type == "generation"
    assert set(captioner.fit_result.validation) >= {"val_bleu4", "val_cider_d", "val_loss"}


def test_evaluate_reports_text_metrics(captioner, captions):
    m = captioner.evaluate(captions.test)
    assert {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider_d", "exact_match"} <= set(m)
    assert m["rows"] == 16 and all(0 <= m[k] <= 1 for k in ("bleu1", "bleu4", "rouge_l", "exact_match"))
    # the metrics score the model's own beam-search texts against the references
    texts = captioner.predict(captions.test)
    refs = pd.read_csv(captions.test)["caption"]
    assert m["exact_match"] == pytest.approx(
        float((texts.str.strip().to_numpy() == refs.str.strip().to_numpy()).mean())
    )
    g = captioner.evaluate(captions.test, decoding={"method": "greedy"})
    assert set(g) == set(m)


def test_save_load_generates_identical_strings(captioner, caption_run, captions):
    loaded = Predictor.load(caption_run, verbose=False)
    for decoding in (None, {"method": "greedy"}, {"beam_width": 2, "length_penalty": 0.5}):
        a = captioner.predict(captions.test, return_scores=True, decoding=decoding)
        b = loaded.predict(captions.test, return_scores=True, decoding=decoding)
        assert (a["caption"] == b["caption"]).all()
        np.testing.assert_allclose(a["log_prob"], b["log_prob"], rtol=1e-5, atol=1e-5)
    # the target tokenizer is saved as JSON in the run directory; the resolved config names it
    task = json.loads((caption_run / "task.json").read_text())
    assert task["tokenizer"]["tokenizer"]["model"]["type"] == "BPE"
    cfg = yaml.safe_load((caption_run / "config.yaml").read_text())
    assert cfg["task"]["generation"]["tokenizer"] == "bpe" and cfg["task"]["problem_type"] == "generation"


def test_beam_width_one_is_greedy_and_max_length_limits(captioner, captions):
    greedy = captioner.predict(captions.test, return_scores=True, decoding={"method": "greedy"})
    beam1 = captioner.predict(captions.test, return_scores=True, decoding={"method": "beam", "beam_width": 1})
    assert (greedy["caption"] == beam1["caption"]).all()
    with captioner.pipeline.decoding({"max_length": 3}):
        out = captioner.pipeline.outputs(captioner.pipeline.prepare(captions.test))
    assert out.ids.shape[1] <= 3 and out.lengths.max() <= 3
    assert len(captioner.predict(captions.test, decoding={"max_length": 3})) == 16
    with pytest.raises(ConfigError, match="more than this model can generate"):
        captioner.predict(captions.test, decoding={"max_length": 10_000})
    with pytest.raises(ConfigError, match="invalid decoding options"):
        captioner.predict(captions.test, decoding={"beam_width": 0})
    assert captioner.task.decoding.beam_width == 3  # overrides last for one call only


def test_missing_image_still_generates(captioner, captions):
    frame = pd.read_csv(captions.test).head(3)
    frame.loc[0, "image"] = None
    pred = captioner.predict(frame, data_root=captions.root)
    assert len(pred) == 3 and all(isinstance(s, str) for s in pred)


def test_classification_only_options_are_refused(captioner, captions, fitted, test_csv):
    with pytest.raises(PolymodalError, match="predict_proba is for classification"):
        captioner.predict_proba(captions.test)
    with pytest.raises(ConfigError, match="not generation"):
        captioner.evaluate(captions.test, robustness=True)
    with pytest.raises(ConfigError, match="return_scores is for generation"):
        fitted.predict(test_csv, return_scores=True)
    with pytest.raises(ConfigError, match="decoding options are for generation"):
        fitted.predict(test_csv, decoding={"method": "greedy"})


def test_int8_backend_is_refused_with_the_choices(caption_run):
    # (the onnx backend of generation models: tests/test_export_generation.py)
    with pytest.raises(ConfigError, match="backend for generation models 'onnx-int8'.*onnx, torch"):
        Predictor.load(caption_run, verbose=False, backend="onnx-int8")


def test_long_targets_are_truncated_with_a_warning(captions, caplog):
    frame = pd.read_csv(captions.train).head(24)
    cfg = tiny_gen(max_target_tokens=5)
    cfg["training"]["max_epochs"] = 1
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        p = Predictor("caption", config=cfg, verbose=False, data_root=captions.root).fit(frame)
    assert "truncated" in caplog.text
    assert p.task.max_target_tokens == 5
    assert (p.task.encode_target(frame["caption"]) != p.task.tokenizer.pad_id).sum(1).max() == 5


def test_empty_targets_and_long_text_inputs(tmp_path, captions):
    """Rows with an empty target are left out of training (with a warning); an empty question is a missing
    modality; a very long question is truncated (limits.max_text_chars, then the text processor's token limit)."""
    frame = pd.read_csv(captions.train).head(30)
    frame["question"] = ["what is in the picture"] * 30
    frame.loc[1, "caption"] = ""
    frame.loc[2, "question"] = ""
    cfg = tiny_gen()
    cfg["training"]["max_epochs"] = 1
    p = Predictor("caption", config=cfg, verbose=False, data_root=captions.root).fit(frame)
    test = frame.head(3).copy()
    test.loc[0, "question"] = "word " * 50_000
    pred = p.predict(test, data_root=captions.root)
    assert len(pred) == 3
    with pytest.raises(PolymodalError, match="has no values"):
        Predictor("caption", config=cfg, verbose=False, data_root=captions.root).fit(frame.assign(caption=""))


def test_pretrained_tokenizer_from_a_model_folder(tmp_path, captions):
    from hf_tiny import build

    folder = build("bert", tmp_path / "bert")
    frame = pd.read_csv(captions.train).head(24)
    # the tiny BERT's vocabulary holds the review words of the demo data, so use those as targets
    frame["caption"] = ["the parcel was great", "the lamp was awful"] * 12
    cfg = tiny_gen(tokenizer="pretrained", pretrained_tokenizer=str(folder))
    cfg["training"]["max_epochs"] = 1
    p = Predictor("caption", config=cfg, verbose=False, data_root=captions.root).fit(frame)
    assert p.task.tokenizer.source == str(folder)
    assert p.task.tokenizer.decode(p.task.tokenizer.encode("the parcel was great")) == "the parcel was great"
    run = p.save(tmp_path / "run")
    a = p.predict(frame.head(4), data_root=captions.root)
    b = Predictor.load(run, verbose=False).predict(frame.head(4), data_root=captions.root)
    assert (a == b).all()


def test_pretrained_tokenizer_needs_a_source(captions):
    cfg = tiny_gen(tokenizer="pretrained")
    with pytest.raises(ConfigError, match="pretrained_tokenizer"):
        Predictor("caption", config=cfg, verbose=False).fit(captions.train)


def test_generation_from_audio_image_and_tabular_inputs(train_csv, test_csv):
    """Every kind of input feeds the decoder's memory (audio time steps, image cells, one tabular token), with
    missing cells in the tiny table; the target is the demo's review text."""
    from conftest import tiny_config

    cfg = tiny_config(max_epochs=1)
    cfg["task"] = {"problem_type": "generation", "generation": {"layers": 1, "dim": 16, "heads": 2}}
    p = Predictor("text", config=cfg, ignore=["label"], verbose=False).fit(train_csv)
    assert set(p.model.memory.names) == {"image", "audio", "tabular"}
    pred = p.predict(test_csv, return_scores=True)
    assert len(pred) == 30 and pred["text"].map(lambda s: isinstance(s, str)).all()
    assert p.task.monitor == ("bleu4", "max")
