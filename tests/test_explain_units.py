"""The parts of polymodal.explain that need no trained model: fusion weights over modalities, how a column is
dropped or shuffled, the bootstrap, and explanations of a 1-epoch model (shapes, fusion weights, regression)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_config

from polymodal import Predictor
from polymodal.config import TaskConfig
from polymodal.data.processors import TabularProcessor
from polymodal.encoders import Encoded
from polymodal.explain import IMPORTANCE_METRICS
from polymodal.explain.columns import column_views
from polymodal.explain.importance import _bootstrap_differences
from polymodal.fusion import FusionInput, build_fusion
from polymodal.registry import FUSIONS
from polymodal.tasks import build_task

MODS = [FusionInput("a", 6), FusionInput("b", 5), FusionInput("c", 7)]
# row 0: all present; row 1: "a" missing; row 2: only "c" present
MASKS = {"a": [True, False, False], "b": [True, True, False], "c": [True, True, True]}
WEIGHTED = ["attention", "transformer", "graph", "gated", "weighted", "late", "dynamic"]


def encoded() -> dict[str, Encoded]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for f in MODS:
        tokens = torch.randn(3, 4, f.dim, generator=g)
        out[f.name] = Encoded(tokens.mean(1), tokens, torch.tensor(MASKS[f.name]), torch.ones(3, 4, dtype=torch.bool))
    return out


def build(name: str):
    task = build_task("multiclass", TaskConfig())
    task.fit_target(pd.Series(["x", "y", "z"]))
    params = {"heads": 2} if name in ("attention", "transformer") else {}
    torch.manual_seed(0)
    return build_fusion(name, MODS, 8, 0.0, params, task).eval()


def test_every_fusion_says_whether_it_weighs_modalities():
    assert set(WEIGHTED) <= set(FUSIONS.names())
    enc = encoded()
    for name in FUSIONS.names():
        w = build(name).modality_weights(enc)
        if name not in WEIGHTED:
            assert w is None, name
            continue
        assert w.shape == (3, 3), name
        present = torch.stack([torch.tensor(MASKS[f.name]) for f in MODS], 1)
        assert torch.allclose(w.sum(1), torch.ones(3), atol=1e-5), name
        assert (w[~present] == 0).all() and (w[present] > 0).all(), (name, w)


def test_late_vote_has_no_weights():
    task = build_task("multiclass", TaskConfig())
    task.fit_target(pd.Series(["x", "y", "z"]))
    assert build_fusion("late", MODS, 8, 0.0, {"combine": "vote"}, task).modality_weights(encoded()) is None


def test_weights_leave_the_fused_output_unchanged():
    """modality_weights reads the fusion; the forward pass (refactored to share code with it) is unchanged."""
    enc = encoded()
    for name in WEIGHTED:
        f = build(name)
        before = f(enc)
        f.modality_weights(enc)
        assert torch.equal(before, f(enc)), name


def _tabular(frame: pd.DataFrame) -> TabularProcessor:
    from polymodal.config import ProcessingConfig
    from polymodal.data.processors import LoadContext

    p = TabularProcessor("tabular", ["x", "y", "c"], ProcessingConfig(), categorical=["c"])
    p.fit(frame, LoadContext(None, None))
    return p


def test_tabular_columns_are_dropped_and_shuffled_one_at_a_time():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [None, 5.0, 6.0], "c": ["p", "q", None]})
    proc = _tabular(frame)
    items = [proc.load(r, None) for r in frame.to_dict("records")]
    views = {v.column: v for v in column_views({"tabular": proc})}
    assert [(v.column, v.kind, v.modality) for v in views.values()] == [
        ("x", "numeric", "tabular"),
        ("y", "numeric", "tabular"),
        ("c", "category", "tabular"),
    ]
    dropped = views["x"].drop(items)
    assert all(tuple(it[0][0]) == (0.0, 1.0) for it in dropped)  # the mean, flagged missing
    assert all(np.array_equal(a[0][1:], b[0][1:]) and np.array_equal(a[1], b[1]) for a, b in zip(dropped, items))
    assert tuple(items[0][0][0]) != (0.0, 1.0), "the input items are not modified"
    # Row 0 has only x and c; with c dropped too it is still present (x), with x, y and c empty it is absent.
    assert views["c"].drop(views["y"].drop(dropped))[0] is None
    shuffled = views["c"].permute(items, np.array([2, 0, 1]))
    assert [int(it[1][0]) for it in shuffled] == [int(items[j][1][0]) for j in (2, 0, 1)]
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(shuffled, items))


def test_paired_bootstrap():
    metric = IMPORTANCE_METRICS.build("multiclass")
    base = np.ones(100)
    variant = base.copy()
    variant[:20] = 0  # 20 % of rows turn wrong
    diffs = _bootstrap_differences(metric, base, [variant], 500, np.random.default_rng(0))
    assert diffs.shape == (500,)
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    assert -0.3 < lo < -0.2 < hi < -0.1 and diffs.mean() == pytest.approx(-0.2, abs=0.01)
    assert np.all(_bootstrap_differences(metric, base, [base], 50, np.random.default_rng(0)) == 0)
    rmse = IMPORTANCE_METRICS.build("regression")
    assert not rmse.higher_is_better and rmse.aggregate(np.array([[4.0, 4.0]]))[0] == 2.0


@pytest.fixture(scope="module")
def attention_model(train_csv):
    cfg = tiny_config(max_epochs=1)
    cfg["fusion"].update({"name": "attention", "heads": 2})
    return Predictor("label", config=cfg, verbose=False, seed=0, preset="fast").fit(train_csv)


@pytest.mark.parametrize("method", ["occlusion", "integrated_gradients"])
def test_explanations_of_an_attention_model(attention_model, small_frame, data_dir, method):
    rows = small_frame.head(4).copy()
    rows.loc[rows.index[1], "image"] = None  # an empty image: no attribution, fusion weight 0
    explanations = attention_model.explain(rows, method=method, data_root=data_dir)
    assert [e.index for e in explanations] == list(rows.index)
    e = explanations[1]
    assert not e.attributions["image"].present and e.attributions["image"].share == 0
    assert e.fusion_weights["image"] == 0 and sum(e.fusion_weights.values()) == pytest.approx(1.0)
    assert set(e.fusion_weights) == {"image", "audio", "text", "tabular"}
    full = explanations[0]
    assert full.attributions["image"].scores.shape == (32, 32)
    assert full.attributions["image"].background.shape == (32, 32, 3)
    assert all(v > 0 for v in full.fusion_weights.values())
    d = full.to_dict()
    assert d["columns"]["image"]["shape"] == [32, 32] and d["fusion_weights"] == full.fusion_weights


def test_regression_explanations_and_importance(train_csv, data_dir, small_frame):
    frame = pd.read_csv(train_csv)
    frame["y"] = frame["reading"].fillna(0) * 3 + 1
    p = Predictor(
        "y",
        config=tiny_config(max_epochs=1),
        ignore=["label"],
        data_root=data_dir,
        verbose=False,
        seed=0,
        preset="fast",
    ).fit(frame)
    rows = small_frame.head(3).assign(y=1.0)
    e = p.explain(rows, method="integrated_gradients", data_root=data_dir)[0]
    assert e.probability is None and e.explained == "predicted value"
    assert e.score == pytest.approx(float(p.predict(rows.head(1), data_root=data_dir).iloc[0]), abs=1e-4)
    r = p.importance(
        small_frame.assign(y=small_frame["reading"].fillna(0) * 3 + 1),
        n_bootstrap=20,
        methods=["drop"],
        data_root=data_dir,
    )
    assert r.metric == "rmse" and not r.higher_is_better
    assert r.get("reading", "drop").importance == pytest.approx(r.get("reading", "drop").score - r.baseline)


def test_generator_opt_ins_leave_the_other_columns_alone(tmp_path):
    from polymodal.datasets.synthetic import generate, generate_image_text

    plain = generate(tmp_path / "a", 20, seed=5, missing_rate=0.2)
    noisy = generate(tmp_path / "b", 20, seed=5, missing_rate=0.2, distractor=True)
    assert list(noisy.columns) == ["image", "audio", "text", "reading", "region", "noise", "label"]
    assert noisy.drop(columns="noise").equals(plain) and noisy["noise"].notna().sum() >= 10
    boxed = generate_image_text(tmp_path / "c", 10, seed=5, shape_box=True)
    assert boxed.drop(columns="shape_box").equals(generate_image_text(tmp_path / "d", 10, seed=5))
    for box in boxed["shape_box"]:
        x0, y0, x1, y1 = map(int, box.split(","))
        assert 0 <= x0 < x1 < 32 and 0 <= y0 < y1 < 32 and x1 - x0 == y1 - y0


def test_classification_explains_the_log_odds_which_do_not_saturate():
    """Issue 18: on a confident row the probability barely moves when evidence is taken away; the log-odds do."""
    from polymodal.errors import ConfigError
    from polymodal.explain.targets import ClassLogOdds, ClassProbability, explain_target

    task = build_task("multiclass", TaskConfig())
    task.fit_target(pd.Series(["x", "y", "z"]))
    target = explain_target(task)
    assert isinstance(target, ClassLogOdds) and target.unit == "log-odds of the predicted class"
    logits = torch.tensor([[2.0, 0.5, -1.0], [30.0, 0.0, 0.0], [20.0, 0.0, 0.0], [0.0, 3.0, 1.0]])
    ref = target.reference(logits[:1])
    assert ref == 0
    p = logits.double().softmax(-1)[:, ref]
    rows = [0, 2, 3]  # row 1: 1 − p = 2e-13 is inexact in float64; its log-odds are exactly 30 − log 2
    np.testing.assert_allclose(target.score(logits, ref)[rows], (p.log() - (1 - p).log())[rows], rtol=1e-5)
    assert float(target.score(logits, ref)[1]) == pytest.approx(30 - np.log(2), abs=1e-4)
    assert target.score(logits, ref)[3] < 0  # another class predicted: negative log-odds
    saturated = explain_target(task, "probability")
    assert type(saturated) is ClassProbability and saturated.gradient_unit == "logit of the predicted class"
    # Rows 1 and 2: p = 1.00 either way; the probability differs by ~2e-9, the log-odds by ~10.
    assert abs(float(saturated.score(logits, ref)[1] - saturated.score(logits, ref)[2])) < 1e-6
    assert float(target.score(logits, ref)[1] - target.score(logits, ref)[2]) == pytest.approx(10.0, abs=1e-3)
    binary = build_task("binary", TaskConfig())
    binary.fit_target(pd.Series(["a", "b"]))
    two = torch.tensor([[1.5, -0.5]])
    assert float(explain_target(binary).score(two, 0)[0]) == pytest.approx(2.0)  # the logit margin
    with pytest.raises(ConfigError, match="log_odds, probability"):
        explain_target(task, "logit")
    regression = build_task("regression", TaskConfig())
    with pytest.raises(ConfigError, match="regression"):
        explain_target(regression, "probability")
