"""Processors: fit on a table, load cells, collate shapes, and state → JSON → set_state round trips."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal.config import PolymodalConfig
from polymodal.data.dataset import prepare
from polymodal.data.processors import (
    MISSING_CATEGORY,
    UNKNOWN_CATEGORY,
    LoadContext,
    TabularProcessor,
    build_processors,
    tokenize,
)
from polymodal.schema import infer_schema


@pytest.fixture(scope="module")
def fitted_processors(train_csv, data_dir):
    frame = pd.read_csv(train_csv)
    cfg = PolymodalConfig()
    schema = infer_schema(frame, "label")
    _modalities, procs = build_processors(schema, cfg)
    ctx = LoadContext(data_dir.resolve(), cfg.limits)
    for p in procs.values():
        p.fit(frame, ctx)
    return frame, procs, ctx, cfg, schema


def test_one_processor_per_modality(fitted_processors):
    _, procs, *_ = fitted_processors
    assert set(procs) == {"image", "audio", "text", "tabular"}
    assert procs["tabular"].numeric == ["reading"] and procs["tabular"].categorical == ["region"]


def test_image_processor(fitted_processors):
    frame, procs, ctx, *_ = fitted_processors
    p = procs["image"]
    assert p.size == 32 and p.channels == 3  # synthetic images are 32x32 RGB
    assert len(p.mean) == 3 and all(s > 0 for s in p.std)
    value = frame["image"].dropna().iloc[0]
    item = p.load(value, ctx)
    assert item.shape == (3, 32, 32) and item.dtype == np.uint8
    out = p.collate([item, None, item], train=False)
    x = out["image"]
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x[0], x[2])
    assert torch.isfinite(x).all()
    xt = p.collate([item, None, item], train=True)["image"]
    assert xt.shape == x.shape


def test_audio_processor(fitted_processors):
    frame, procs, ctx, *_ = fitted_processors
    p = procs["audio"]
    assert p.sample_rate == 8000 and p.seconds == pytest.approx(0.5)
    item = p.load(frame["audio"].dropna().iloc[0], ctx)
    assert item.dtype == np.float32 and item.ndim == 1 and len(item) == 4000
    mel = p.collate([item, None], train=False)["audio"]
    assert mel.shape == (2, 1, p.n_mels, p.n_frames)
    assert torch.isfinite(mel).all()
    assert p.collate([item, None], train=True)["audio"].shape == mel.shape


def test_text_processor(fitted_processors):
    _frame, procs, ctx, *_ = fitted_processors
    p = procs["text"]
    assert p.vocab[:2] == ["<pad>", "<unk>"]
    assert tokenize("Hello, World!") == ["hello", ",", "world", "!"]
    a = p.load("the parcel was great", ctx)
    b = p.load("zzzunseenword", ctx)
    assert a.dtype == np.int64 and (a >= 2).all()
    assert b.tolist() == [1]  # unknown token
    ids = p.collate([a, None, b], train=False)["text"]
    assert ids.dtype == torch.long and ids.shape == (3, len(a))
    assert (ids[1] == 0).all()  # absent row is all padding
    assert ids[2, 0] == 1 and (ids[2, 1:] == 0).all()


def test_text_is_truncated_to_max_tokens(fitted_processors):
    _, procs, ctx, *_ = fitted_processors
    p = procs["text"]
    assert len(p.load(" ".join(["great"] * 1000), ctx)) == p.max_tokens


def test_tabular_processor_imputes_and_flags_nan(fitted_processors):
    _frame, procs, ctx, *_ = fitted_processors
    p: TabularProcessor = procs["tabular"]
    mean, std = p.stats["reading"]["mean"], p.stats["reading"]["std"]
    num, cat = p.load({"reading": mean + std, "region": "north"}, ctx)
    assert num.tolist() == [[pytest.approx(1.0), 0.0]]
    assert cat[0] >= 2
    for missing in (float("nan"), None, "", float("inf")):
        num, _ = p.load({"reading": missing, "region": "north"}, ctx)
        assert num.tolist() == [[0.0, 1.0]], missing  # imputed with the mean (0 after scaling) + missing flag
    _, cat = p.load({"reading": 1.0, "region": "atlantis"}, ctx)
    assert cat.tolist() == [UNKNOWN_CATEGORY]
    _, cat = p.load({"reading": 1.0, "region": None}, ctx)
    assert cat.tolist() == [MISSING_CATEGORY]
    assert p.unknown_categories(pd.DataFrame({"region": ["north", "atlantis", None, "mars"]})) == {"region": [1, 3]}
    out = p.collate([p.load({"reading": 0.5, "region": "east"}, ctx), None], train=False)
    assert out["tabular.numeric"].shape == (2, 2) and out["tabular.category"].shape == (2, 1)
    assert out["tabular.numeric"][1].tolist() == [0.0, 1.0]


def test_tabular_rejects_non_numbers_in_numeric_column(fitted_processors):
    from polymodal.errors import LoadError

    _, procs, ctx, *_ = fitted_processors
    with pytest.raises(LoadError, match="'abc' is not a number.*reading"):
        procs["tabular"].load({"reading": "abc", "region": "north"}, ctx)


def test_state_round_trip_gives_identical_collate(fitted_processors):
    frame, procs, ctx, cfg, schema = fitted_processors
    head = frame.iloc[:12]
    prepared = prepare(head, procs, ctx, progress=False)
    _, fresh = build_processors(schema, cfg)
    for name, p in procs.items():
        state = json.loads(json.dumps(p.state()))  # what the run directory stores
        fresh[name].set_state(state, {})
        items = prepared.items[name]
        a, b = p.collate(items, train=False), fresh[name].collate(items, train=False)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
        # and decoding with the restored processor gives the same items
        for v, item in zip([fresh[name].cell(r) for r in head.to_dict("records")], items):
            if item is not None:
                again = fresh[name].load(v, ctx)
                if isinstance(item, tuple):
                    assert all(np.array_equal(x, y) for x, y in zip(item, again))
                else:
                    assert np.array_equal(item, again)


def test_prepare_marks_empty_cells_absent(fitted_processors):
    frame, procs, ctx, *_ = fitted_processors
    head = frame.iloc[:6].copy()
    head.loc[head.index[1], "image"] = None
    head.loc[head.index[2], "text"] = "   "
    prepared = prepare(head, procs, ctx, progress=False)
    assert prepared.items["image"][1] is None
    assert prepared.items["text"][2] is None
    assert not prepared.issues and len(prepared) == 6
