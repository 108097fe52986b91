"""Chinese/Japanese text is segmented by the from-scratch tokenizer (issue 25, acceptance 3); mixed scripts keep their
Latin words; the segmentation is saved with the processor state (JSON) and old states keep the regex tokens."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pandas as pd
import pytest

from polymodal import Predictor
from polymodal.config import LimitsConfig, ProcessingConfig
from polymodal.data import segment
from polymodal.data.processors import LoadContext, TextProcessor
from polymodal.datasets.reviews_zh import generate_reviews
from polymodal.errors import ConfigError

SENTENCE = "我喜欢这个产品，质量很好！"


def test_regex_keeps_a_clause_as_one_token_and_the_default_splits_it():
    assert segment.tokenize(SENTENCE, "regex") == ["我喜欢这个产品", "，", "质量很好", "！"]
    default = segment.tokenize(SENTENCE)
    assert {"我", "喜", "好", "，", "！"} <= set(default)
    assert "我喜欢这个产品" not in default


def test_char_and_bigram_segmentation():
    assert segment.tokenize("质量不好。", "char") == ["质", "量", "不", "好", "。"]
    assert segment.tokenize("不好", "char_bigram") == ["不", "不好", "好"]
    # bigrams never cross punctuation or a Latin word
    assert "好i" not in segment.tokenize("很好iPhone", "char_bigram")
    assert "好，" not in segment.tokenize("很好，", "char_bigram")


@pytest.mark.parametrize("segmentation", ["regex", "char", "char_bigram"])
def test_mixed_scripts_keep_latin_words(segmentation):
    toks = segment.tokenize("iPhone 15 Pro用了3天，Battery很好", segmentation)
    assert toks[:3] == ["iphone", "15", "pro"]
    assert "battery" in toks and "3" in toks


@pytest.mark.parametrize("segmentation", ["regex", "char", "char_bigram"])
def test_text_without_cjk_is_tokenized_as_before(segmentation):
    text = "The battery was GREAT, wasn't it? 10/10"
    assert segment.tokenize(text, segmentation) == segment.tokenize(text, "regex")
    assert segment.tokenize(text, "regex") == ["the", "battery", "was", "great", ",", "wasn", "'", "t", "it", "?"] + [
        "10",
        "/",
        "10",
    ]


def test_word_segmentation_with_jieba():
    pytest.importorskip("jieba", reason="jieba (the 'cjk' extra) is not installed")
    toks = segment.tokenize("质量非常不错，App很难用", "word")
    assert "非常" in toks and "不错" in toks and "app" in toks


def test_word_segmentation_without_jieba_says_what_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_jieba(name, *args, **kwargs):
        if name == "jieba":
            raise ImportError("no jieba")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jieba)
    with pytest.raises(ConfigError, match=r"polymodal\[cjk\]"):
        segment.segmenter("word")


def test_unknown_segmentation_is_a_config_error():
    with pytest.raises(ConfigError, match="char_bigram"):
        Predictor("label", config={"processing": {"text_segmentation": "chars"}})


def _fitted(cfg: ProcessingConfig) -> TextProcessor:
    p = TextProcessor("review", ["review"], cfg)
    p.fit(generate_reviews(50), LoadContext(Path("."), LimitsConfig()))
    return p


def test_processor_state_records_the_segmentation_and_old_states_keep_regex():
    p = _fitted(ProcessingConfig())
    state = json.loads(json.dumps(p.state()))  # JSON, as saved in the run directory
    assert state["segmentation"] == segment.DEFAULT_SEGMENTATION
    assert "质" in p.vocab and all(not segment.has_cjk(t) or len(t) <= 2 for t in p.vocab)
    again = TextProcessor("review", ["review"], ProcessingConfig(text_segmentation="regex"))
    again.set_state(state, {})
    ctx = LoadContext(Path("."), LimitsConfig())
    assert again.load(SENTENCE, ctx).tolist() == p.load(SENTENCE, ctx).tolist()
    legacy = {k: v for k, v in state.items() if k != "segmentation"}
    old = TextProcessor("review", ["review"], ProcessingConfig())
    old.set_state(legacy, {})
    assert old.segmentation == "regex" and old.tokens(SENTENCE) == segment.tokenize(SENTENCE, "regex")


def test_fit_on_chinese_reviews_saves_and_reloads_the_segmentation(tmp_path):
    train, test = generate_reviews(120, seed=0), generate_reviews(40, seed=1)
    p = Predictor("label", config={"training": {"max_epochs": 2}}, verbose=False).fit(train)
    run = p.save(tmp_path / "run")
    loaded = Predictor.load(run, verbose=False)
    pd.testing.assert_frame_equal(loaded.predict_proba(test), p.predict_proba(test))
    saved = json.dumps([json.loads(f.read_text(encoding="utf-8")) for f in run.rglob("*.json")], ensure_ascii=False)
    assert f'"segmentation": "{segment.DEFAULT_SEGMENTATION}"' in saved
