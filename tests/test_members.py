"""Classical members (gbm, linear): their torch forms equal the libraries' own predictions, round-trip through
spec + tensors, export to ONNX, learn, and feed the task's metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from polymodal import fitting
from polymodal.config import PolymodalConfig
from polymodal.data.dataset import Batch, Prepared, make_loader
from polymodal.data.processors import Processor
from polymodal.data.readers import Table
from polymodal.members import MEMBERS, GBMMember, LinearMember, LinearTextMember
from polymodal.members.features import FeatureSet, TfidfBlock
from polymodal.schema import Modality
from polymodal.tasks import Task

CLASSICAL = ["gbm", "gbm_tabular", "linear", "linear_text"]


@dataclass
class Fitted:
    """A table taken through the fitting steps up to the decoded rows."""

    modalities: list[Modality]
    processors: dict[str, Processor]
    task: Task
    train: Prepared
    val: Prepared
    val_labels: pd.Series

    def batch(self, rows: Prepared | None = None) -> Batch:
        rows = self.val if rows is None else rows
        return next(iter(make_loader(rows, self.processors, len(rows), False)))


def prepared(frame: pd.DataFrame, label: str = "y", config: dict[str, Any] | None = None) -> Fitted:
    cfg = PolymodalConfig(**(config or {}))
    table = Table(frame, Path("."), None)
    schema = fitting.fit_schema(frame, label, cfg)
    task = fitting.resolve_task(cfg, frame[label], schema)
    train_t, val_t = fitting.validation_split(table, label, task, cfg.training)
    modalities, processors = fitting.fit_processors(schema, cfg, train_t)
    train, val = fitting.prepare_labelled(
        [(train_t, "training rows"), (val_t, "validation rows")], label, processors, task, cfg, verbose=False
    )
    val_labels = val_t.frame[label].iloc[val.rows].reset_index(drop=True)
    return Fitted(modalities, processors, task, train, val, val_labels)


WORDS = ["red", "blue", "green", "small", "large", "old", "new", "box", "lamp", "chair"]


def mixed_table(n: int, problem: str, seed: int = 0) -> pd.DataFrame:
    """Numerics with missing values, a category with missing values, a text column; the label depends on all."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    x1[rng.random(n) < 0.15] = np.nan
    cat = rng.choice(["a", "b", "c", "d"], n).astype(object)
    cat[rng.random(n) < 0.1] = None
    good = rng.random(n) < 0.5
    text = [
        " ".join([*rng.choice(WORDS, 4), "great" if g else "awful", *rng.choice(WORDS, int(rng.integers(0, 4)))])
        for g in good
    ]
    score = np.nan_to_num(x1) + 0.5 * x2 + 1.5 * good + 0.8 * (cat == "a")
    if problem == "regression":
        y: Any = score + 0.1 * rng.normal(size=n)
    elif problem == "binary":
        y = np.where(score > np.median(score), "yes", "no")
    else:
        y = np.digitize(score, np.quantile(score, [0.33, 0.66])).astype(str)
        y = np.array([f"class_{v}" for v in y])
    return pd.DataFrame({"x1": x1, "x2": x2, "c": cat, "t": text, "y": y})


@pytest.fixture(scope="module", params=["binary", "multiclass", "regression"])
def table(request) -> Fitted:
    return prepared(mixed_table(240, request.param, seed=1))


def _outputs(member: torch.nn.Module, batch: Batch) -> np.ndarray:
    with torch.no_grad():
        return member(batch.inputs, batch.masks).numpy()


# ------------------------------------------------------------------------------------------ exact forms
def test_gbm_traversal_equals_lightgbm_raw_scores(table):
    member = GBMMember.fit(table.train, table.val, table.modalities, table.processors, table.task)
    for rows in (table.train, table.val):
        batch = table.batch(rows)
        with torch.no_grad():
            x = member.features(batch.inputs, batch.masks)
            ours = member.forest(x).numpy()
        assert torch.isnan(x).any(), "the table has missing values the trees must route"
        raw = member.booster.predict(x.double().numpy(), raw_score=True, num_iteration=member.info["best_iteration"])
        raw = raw.reshape(len(x), -1)
        np.testing.assert_allclose(ours, raw, atol=1e-5, rtol=0)
        out = _outputs(member, batch)
        assert out.shape == (len(x), table.task.n_outputs)
        if table.task.problem_type == "binary":  # the raw score is the second class's logit
            np.testing.assert_allclose(out[:, 1] - out[:, 0], raw[:, 0], atol=1e-5)
    assert member.forest.n_trees >= 2 and member.forest.depth >= 1


def test_linear_equals_scikit_learn(table):
    member = LinearMember.fit(table.train, table.val, table.modalities, table.processors, table.task)
    x = member.features.matrix(table.val, table.processors)
    out = _outputs(member, table.batch())
    est = member.estimator
    if table.task.problem_type == "regression":
        np.testing.assert_allclose(out[:, 0], est.predict(x), atol=1e-5)
    elif table.task.problem_type == "binary":
        np.testing.assert_allclose(out[:, 1] - out[:, 0], est.decision_function(x), atol=1e-5)
    else:
        np.testing.assert_allclose(out[:, est.classes_], est.decision_function(x), atol=1e-5)
        np.testing.assert_allclose(
            torch.softmax(torch.from_numpy(out), 1).numpy()[:, est.classes_], est.predict_proba(x), atol=1e-5
        )


def test_thresholds_round_down_to_float32():
    from polymodal.members.gbm import float32_floor

    rng = np.random.default_rng(0)
    for t in (0.1, -0.1, 1 / 3, 2.5, 1e300, -1e300, 0.0, *rng.normal(size=20)):
        f = float32_floor(float(t))
        near = np.float32(np.clip(t, -3e38, 3e38))
        xs = [near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, np.float32(-np.inf)), np.float32(0)]
        for x in xs:  # float32 inputs decide as LightGBM decides in double
            assert (x <= f) == (float(x) <= t), (t, x)


def test_tfidf_equals_scikit_learns_vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer

    data = prepared(mixed_table(120, "binary"))
    text = next(m for m in data.modalities if m.kind == "text")
    block = TfidfBlock.fitted(text, data.processors["t"], data.train, None)
    # the same documents as token id strings, padding left out as the block leaves it out
    docs = [" ".join(f"w{i}" for i in ids if i != 0) for ids in data.train.items["t"]]
    ref = TfidfVectorizer(token_pattern=r"\S+", lowercase=False).fit(docs)
    batch = data.batch(data.train)
    with torch.no_grad():
        ours = block(batch.inputs, batch.masks).numpy()
    want = ref.transform(docs).toarray()
    ids = np.asarray([int(t[1:]) for t in ref.get_feature_names_out()])
    order = block.remap[torch.from_numpy(ids)].numpy()  # our feature index of each of scikit-learn's columns
    np.testing.assert_allclose(ours[:, order], want, atol=1e-6)


# ------------------------------------------------------------------------------------------ persistence, export
@pytest.mark.parametrize("name", CLASSICAL)
def test_spec_and_tensors_round_trip(name, table, tmp_path):
    cls = MEMBERS.get(name)
    member = cls.fit(table.train, table.val, table.modalities, table.processors, table.task, seed=3)
    spec = json.loads(json.dumps(member.spec()))  # JSON only
    save_file(member.state_dict(), tmp_path / "member.safetensors")
    rebuilt = cls.from_spec(spec, table.modalities, table.processors, table.task)
    rebuilt.load_state_dict(load_file(tmp_path / "member.safetensors"))
    batch = table.batch()
    np.testing.assert_array_equal(_outputs(member, batch), _outputs(rebuilt, batch))
    assert rebuilt.feature_importance() == member.feature_importance()


@pytest.mark.parametrize("name", CLASSICAL)
def test_members_export_to_onnx_and_match_eager(name, table):
    from polymodal.export.onnx_graph import session, to_onnx

    member = MEMBERS.get(name).fit(table.train, table.val, table.modalities, table.processors, table.task)
    graph, signature = to_onnx(member, table.processors)  # also checks another batch shape against eager
    sess = session(graph)
    names = {i.name for i in sess.get_inputs()}
    batch = table.batch()
    batch.masks["t"][::3] = False  # absent modalities too
    got = sess.run([signature.output], {k: v for k, v in signature.feed(batch).items() if k in names})[0]
    np.testing.assert_allclose(got, _outputs(member, batch), atol=1e-5)


# ------------------------------------------------------------------------------------------ applicability
def test_applies_needs_tabular_or_text_and_a_supported_task():
    from polymodal.config import TaskConfig
    from polymodal.tasks import build_task

    binary = build_task("binary", TaskConfig())
    image = Modality("image", "image", ["image"])
    text = Modality("t", "text", ["t"])
    tab = Modality("tabular", "tabular", ["x"])
    applies = {name: MEMBERS.get(name).applies for name in CLASSICAL}
    assert not any(a([image], binary) for a in applies.values())
    assert {n for n, a in applies.items() if a([image, tab], binary)} == {"gbm", "linear"}
    assert {n for n, a in applies.items() if a([text], binary)} == {"gbm", "linear"}
    assert {n for n, a in applies.items() if a([text, tab], binary)} == set(CLASSICAL)
    generation = build_task("generation", TaskConfig())
    assert not any(a([text, tab], generation) for a in applies.values())


def test_fitting_without_its_columns_says_what_it_reads():
    from polymodal.errors import DataError

    data = prepared(mixed_table(60, "binary").drop(columns=["t"]))
    with pytest.raises(DataError, match="reads text columns"):
        LinearTextMember.fit(data.train, data.val, data.modalities, data.processors, data.task)


# ------------------------------------------------------------------------------------------ learning
def test_linear_on_a_keyword_and_gbm_on_a_threshold_learn():
    rng = np.random.default_rng(5)
    n = 300
    x = rng.normal(size=n)
    noise = rng.normal(size=n)
    key = rng.random(n) < 0.5
    text = [" ".join([*rng.choice(WORDS, 5), "refund" if k else "thanks"]) for k in key]
    frame = pd.DataFrame({"x": x, "noise": noise, "t": text})
    by_text = prepared(frame.assign(y=np.where(key, "bad", "good")))
    linear = LinearTextMember.fit(by_text.train, by_text.val, by_text.modalities, by_text.processors, by_text.task)
    assert (_outputs(linear, by_text.batch()).argmax(1) == by_text.val.targets).mean() >= 0.95
    assert max(linear.feature_importance(), key=linear.feature_importance().get) == "t"
    by_number = prepared(frame.assign(y=np.where(x > 0.3, "high", "low")))
    gbm = GBMMember.fit(by_number.train, by_number.val, by_number.modalities, by_number.processors, by_number.task)
    assert (_outputs(gbm, by_number.batch()).argmax(1) == by_number.val.targets).mean() >= 0.95
    assert max(gbm.feature_importance(), key=gbm.feature_importance().get) == "x"
    assert abs(sum(gbm.feature_importance().values()) - 1) < 1e-9


@pytest.mark.parametrize("name", ["gbm", "linear"])
def test_outputs_feed_the_tasks_metrics_and_predictions(name, table):
    member = MEMBERS.get(name).fit(table.train, table.val, table.modalities, table.processors, table.task)
    out = _outputs(member, table.batch())
    metrics = table.task.metrics(table.val_labels, out)
    predictions = table.task.postprocess(out)
    assert len(predictions) == len(table.val_labels)
    if table.task.problem_type == "regression":
        assert metrics["r2"] > 0.5
    else:
        assert metrics["accuracy"] > 1.5 / table.task.n_outputs  # well above chance
        assert set(predictions) <= set(table.task.classes)


def test_gbm_stops_at_its_time_limit():
    data = prepared(mixed_table(120, "binary"))
    member = GBMMember.fit(data.train, data.val, data.modalities, data.processors, data.task, time_limit=0.0)
    assert member.info["best_iteration"] <= 2


def test_hugging_face_token_ids_make_tfidf_too(tmp_path):
    from hf_tiny import build

    from polymodal.datasets.synthetic import NEGATIVE, POSITIVE

    rng = np.random.default_rng(0)
    good = rng.random(120) < 0.5
    text = [str(rng.choice(POSITIVE if g else NEGATIVE)) for g in good]
    frame = pd.DataFrame({"t": text, "x": rng.normal(size=120), "y": np.where(good, "pos", "neg")})
    model = build("bert", tmp_path / "bert")
    data = prepared(
        frame, config={"columns": {"t": "text"}, "encoders": {"text": {"name": "hf_text", "model": str(model)}}}
    )
    member = LinearMember.fit(data.train, data.val, data.modalities, data.processors, data.task)
    assert [b.key for b in member.features.blocks if isinstance(b, TfidfBlock)] == ["t.input_ids"]
    assert (_outputs(member, data.batch()).argmax(1) == data.val.targets).mean() >= 0.9


def test_feature_set_reports_each_features_column(table):
    member = LinearMember.fit(table.train, table.val, table.modalities, table.processors, table.task)
    columns = member.features.columns
    assert set(columns) == {"x1", "x2", "c", "t"}
    # numerics: value and missing flag; the category: one slot per known value plus missing and unknown
    assert columns.count("x1") == 2 and columns.count("c") == 4 + 2
    assert isinstance(member.features, FeatureSet)


def test_every_member_is_documented():
    guide = (Path(__file__).resolve().parents[1] / "docs" / "USER_GUIDE.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(" `") for line in guide.splitlines() if line.startswith("| `")}
    for name in MEMBERS.names():
        assert name in rows, f"add member '{name}' to the table of classical members in docs/USER_GUIDE.md"
