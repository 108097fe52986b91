"""problem_type retrieval: two towers trained with InfoNCE, embed/search, exact vs approximate search, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from polymodal import Predictor
from polymodal.cli import app
from polymodal.datasets.pairs import make_pairs
from polymodal.errors import ConfigError, SchemaError
from polymodal.metrics.retrieval import pair_ranks, retrieval_metrics
from polymodal.search import ApproximateIndex, exact_search, search
from polymodal.tasks.retrieval import gather_with_grad, info_nce

CONFIG = {
    "training": {"max_epochs": 8, "batch_size": 16, "learning_rate": 3e-3},
    "encoders": {
        "image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2},
        "text": {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16},
    },
    "fusion": {"dim": 32},
}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"), n_train=96, n_test=32, seed=0)


@pytest.fixture(scope="module")
def fitted(pairs) -> Predictor:
    p = Predictor(problem_type="retrieval", query=["caption"], target=["image"], config=CONFIG, seed=0, verbose=False)
    return p.fit(pairs.train)


@pytest.fixture(scope="module")
def run(fitted, tmp_path_factory) -> Path:
    return fitted.save(tmp_path_factory.mktemp("runs") / "retrieval")


def test_pairs_are_distinct(pairs):
    frame = pd.concat([pd.read_csv(pairs.train), pd.read_csv(pairs.test)])
    assert frame["caption"].is_unique and len(frame) == 128


def test_trains_end_to_end_and_beats_random(fitted, pairs):
    m = fitted.evaluate(pairs.test)
    assert m["rows"] == 32
    assert {"q2t_recall@1", "t2q_recall@5", "q2t_mrr", "t2q_median_rank", "recall@10"} <= set(m)
    # random ranking: Recall@10 = 10/32 in each direction
    assert m["recall@10"] > 10 / 32 + 0.1
    assert fitted.fit_result is not None and "val_recall@10" in fitted.fit_result.validation


def test_embed_search_roundtrip_after_save_load(fitted, run, pairs):
    loaded = Predictor.load(run, verbose=False)
    test = pd.read_csv(pairs.test)
    targets = fitted.embed(test[["image"]], side="target", data_root=pairs.root)
    assert targets.dtype == np.float32 and targets.shape == (32, 128)
    np.testing.assert_allclose(np.linalg.norm(targets, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(loaded.embed(pairs.test, side="target"), targets, atol=1e-6)
    queries = loaded.embed(test[["caption"]], side="query")
    hits = loaded.search(pairs.test, pairs.test, k=5)
    assert hits.indices.shape == (32, 5) and (np.diff(hits.scores, axis=1) <= 1e-6).all()
    by_vectors = loaded.search(queries, targets, k=5)
    np.testing.assert_array_equal(hits.indices, by_vectors.indices)
    # the best hit of each query is what predict() reports for the pairs' table
    np.testing.assert_array_equal(loaded.predict(pairs.test).to_numpy(), hits.indices[:, 0])


def test_embed_refuses_a_table_without_the_sides_columns(fitted, pairs):
    with pytest.raises(SchemaError, match="caption"):
        fitted.embed(pd.read_csv(pairs.test)[["image"]], side="query", data_root=pairs.root)
    with pytest.raises(ConfigError, match="side"):
        fitted.embed(pairs.test, side="both")


def test_predictor_checks_its_retrieval_parameters():
    with pytest.raises(ConfigError, match="query and target"):
        Predictor(problem_type="retrieval", query=["caption"])
    with pytest.raises(ConfigError, match="label is needed"):
        Predictor(problem_type="binary")
    with pytest.raises(ConfigError, match="no label"):
        Predictor("y", problem_type="retrieval", query="a", target="b")


def test_exact_and_approximate_search_agree_on_a_small_collection(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((2000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    queries = vecs[:100] + 0.1 * rng.standard_normal((100, 32)).astype(np.float32)
    exact = exact_search(queries, vecs, 10)
    index = ApproximateIndex.build(vecs)
    approx = index.search(queries, 10)
    overlap = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.indices, exact.indices, strict=True)])
    assert overlap >= 0.95
    np.testing.assert_allclose(approx.scores[:, 0], exact.scores[:, 0], atol=1e-4)
    # saved in usearch's own format and loaded back: the same hits
    reloaded = ApproximateIndex.load(index.save(tmp_path / "index"))
    np.testing.assert_array_equal(reloaded.search(queries, 10).indices, approx.indices)
    # the dispatcher: exact up to exact_max_rows, approximate above
    np.testing.assert_array_equal(search(queries, vecs, 10, exact_max_rows=5000).indices, exact.indices)
    assert search(queries, vecs, 10, exact_max_rows=10).indices.shape == (100, 10)
    with pytest.raises(ConfigError, match="no search index"):
        ApproximateIndex.load(tmp_path / "nothing")


def test_exact_search_orders_hits_best_first():
    coll = np.eye(4, dtype=np.float32)
    hits = exact_search(np.array([[0.1, 0.9, 0.5, 0.0]], np.float32), coll, 3)
    assert hits.indices.tolist() == [[1, 2, 0]]
    assert exact_search(coll, coll, 99).indices.shape == (4, 4)  # k is capped at the collection's size
    with pytest.raises(ConfigError, match="k must be"):
        exact_search(coll, coll, 0)


def test_rank_metrics():
    x = np.eye(20, dtype=np.float32)
    assert retrieval_metrics(x, x)["recall@1"] == 1.0
    same = np.ones((20, 4), np.float32)  # a constant model ranks every right answer last: no credit
    assert (pair_ranks(same, same) == 20).all()
    m = retrieval_metrics(same, same)
    assert m["recall@10"] == 0.0 and m["q2t_median_rank"] == 20


def test_info_nce_is_symmetric_and_learns_the_scale():
    torch.manual_seed(0)
    out = torch.nn.functional.normalize(torch.randn(8, 2, 16), dim=-1).requires_grad_()
    assert gather_with_grad(out[:, 0])[1] == 0  # one process: the batch itself, local rows first
    loss = info_nce(out)
    loss.backward()
    assert out.grad is not None and torch.isfinite(loss)
    aligned = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    paired = torch.stack([aligned, aligned], 1)
    assert info_nce(paired * 4.0) < info_nce(paired)  # a sharper (higher) scale lowers the loss of right pairs


def test_cli_fit_embed_search(run, pairs, tmp_path):
    runner = CliRunner()
    vecs, hits = tmp_path / "vecs.npy", tmp_path / "hits.csv"
    r = runner.invoke(app, ["embed", str(run), str(pairs.test), "--side", "target", "--out", str(vecs), "-q"])
    assert r.exit_code == 0, r.output
    assert np.load(vecs).shape == (32, 128)
    r = runner.invoke(
        app, ["search", str(run), str(pairs.test), "--collection", str(pairs.test), "--k", "3", "--out", str(hits)]
    )
    assert r.exit_code == 0, r.output
    table = pd.read_csv(hits)
    assert list(table.columns) == ["query", "rank", "target", "score"] and len(table) == 96


def test_cli_bad_input_exits_2(run, pairs, tmp_path):
    runner = CliRunner()
    r = runner.invoke(
        app,
        ["fit", str(pairs.train), "--problem-type", "retrieval", "--query", "nope", "--target", "image"]
        + ["--out", str(tmp_path / "r"), "-q"],
    )
    assert r.exit_code == 2 and "nope" in r.output
    r = runner.invoke(app, ["fit", str(pairs.train), "--problem-type", "retrieval", "--query", "caption", "-o", "x"])
    assert r.exit_code == 2 and "--target" in r.output
    r = runner.invoke(app, ["embed", str(run), str(pairs.test), "--side", "sideways", "--out", str(tmp_path / "v")])
    assert r.exit_code == 2 and "--side" in r.output
    r = runner.invoke(app, ["search", str(run), str(pairs.test), "--k", "3", "--out", str(tmp_path / "h.csv")])
    assert r.exit_code == 2 and "index" in r.output  # no --collection and no index built yet
