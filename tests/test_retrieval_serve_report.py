"""Retrieval models served and reported: POST /embed and POST /search match Predictor.embed/search; /predict
refuses; the usual guards apply; other models refuse /embed and /search. The HTML report's retrieval section."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from polymodal import Predictor
from polymodal.cli import app as cli_app
from polymodal.datasets.pairs import make_pairs
from polymodal.errors import ConfigError
from polymodal.retrieval import save_vectors
from polymodal.serving.app import create_app
from polymodal.serving.schemas import ServeConfig

CONFIG = {
    "training": {"max_epochs": 2, "batch_size": 16, "learning_rate": 3e-3},
    "encoders": {
        "image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2},
        "text": {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16},
    },
    "fusion": {"dim": 32},
    "task": {"retrieval": {"dim": 16}},
}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"), n_train=48, n_test=12, seed=1)


@pytest.fixture(scope="module")
def retriever(pairs) -> Predictor:
    p = Predictor(problem_type="retrieval", query=["caption"], target=["image"], config=CONFIG, seed=0, verbose=False)
    return p.fit(pairs.train)


def caption_rows(frame: pd.DataFrame) -> list[dict]:
    return [{"caption": c} for c in frame["caption"]]


def image_rows(frame: pd.DataFrame, root: Path) -> list[dict]:
    return [{"image": base64.b64encode((root / p).read_bytes()).decode()} for p in frame["image"]]


@pytest.fixture(scope="module")
def client(retriever, pairs):
    app = create_app(retriever, ServeConfig(collection=str(pairs.test), max_rows=8, max_body_bytes=200_000))
    with TestClient(app) as c:
        yield c


def test_embed_matches_predictor_embed_both_sides(retriever, pairs, client):
    frame = pd.read_csv(pairs.test).head(5)
    r = client.post("/embed", json={"rows": caption_rows(frame)})
    assert r.status_code == 200, r.text
    assert r.json()["side"] == "query" and r.json()["dim"] == 16
    expected = retriever.embed(frame, side="query", data_root=pairs.root)
    np.testing.assert_allclose(np.array(r.json()["vectors"]), expected, atol=1e-5)
    r = client.post("/embed", params={"column": "image"}, json={"rows": image_rows(frame, pairs.root)})
    assert r.status_code == 200, r.text
    assert r.json()["side"] == "target"
    expected = retriever.embed(frame, side="target", data_root=pairs.root)
    np.testing.assert_allclose(np.array(r.json()["vectors"]), expected, atol=1e-5)


def test_openapi_documents_the_retrieval_routes(client):
    spec = client.get("/openapi.json").json()
    assert {"/embed", "/search"} <= set(spec["paths"])
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]["rows"]["items"]["properties"]) == {"caption"}
    assert client.get("/metadata").json()["problem_type"] == "retrieval"


def test_search_matches_predictor_search(retriever, pairs, client):
    frame = pd.read_csv(pairs.test)
    r = client.post("/search", params={"k": 3}, json={"rows": caption_rows(frame.head(4))})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["collection_rows"] == len(frame)
    hits = retriever.search(frame.head(4), pairs.test, k=3, data_root=pairs.root)
    assert [[h["target"] for h in row] for row in body["hits"]] == hits.indices.tolist()
    np.testing.assert_allclose([[h["score"] for h in row] for row in body["hits"]], hits.scores, atol=1e-5)


def test_bad_requests_are_4xx_with_a_message(client, pairs):
    frame = pd.read_csv(pairs.test)
    cases = [
        ({"json": {"rows": [{"image": "x"}]}}, 422),  # a target column on the query side
        ({"json": {"rows": caption_rows(frame.head(1)) * 9}}, 413),  # over max_rows
        ({"json": {"rows": []}}, 422),
        ({"content": b"caption=a", "headers": {"content-type": "text/plain"}}, 415),
        ({"content": b"x" * 300_000, "headers": {"content-type": "application/json"}}, 413),  # body limit
        ({"json": {"rows": caption_rows(frame.head(1))}, "params": {"column": "nope"}}, 422),
        ({"json": {"rows": caption_rows(frame.head(1))}, "params": {"column": "image", "side": "query"}}, 422),
    ]
    for kwargs, status in cases:
        r = client.post("/embed", **kwargs)
        assert r.status_code == status, (kwargs.get("params"), r.text)
        assert r.json()["error"]
    r = client.post("/search", params={"k": 0}, json={"rows": caption_rows(frame.head(1))})
    assert r.status_code == 422
    r = client.post("/predict", json={"rows": [{"caption": "a", "image": None}]})
    assert r.status_code == 400 and "/search" in r.json()["error"]


def test_api_key_guards_the_retrieval_routes(retriever, pairs, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("k" * 20 + "\n")
    app = create_app(retriever, ServeConfig(api_key_file=str(keys)))
    with TestClient(app) as c:
        body = {"rows": [{"caption": "a red circle"}]}
        assert c.post("/embed", json=body).status_code == 401
        assert c.post("/embed", json=body, headers={"X-API-Key": "k" * 20}).status_code == 200
        # no collection given and none saved in the run: a clear 409, not a crash
        r = c.post("/search", json=body, headers={"X-API-Key": "k" * 20})
        assert r.status_code == 409 and "--collection" in r.json()["error"]


def test_collection_from_vectors_and_a_wrong_width_is_refused(retriever, pairs, tmp_path):
    vecs = retriever.embed(pairs.test, side="target", data_root=pairs.root)
    app = create_app(retriever, ServeConfig(collection=str(save_vectors(vecs, tmp_path / "items.npy"))))
    with TestClient(app) as c:
        r = c.post("/search", params={"k": 2}, json={"rows": [{"caption": "a red circle"}]})
        assert r.status_code == 200 and r.json()["collection_rows"] == len(vecs)
    save_vectors(np.ones((3, 7), np.float32), tmp_path / "bad.npy")
    with pytest.raises(ConfigError, match="7-dimensional"):
        create_app(retriever, ServeConfig(collection=str(tmp_path / "bad.npy")))


def test_a_classifier_refuses_embed_and_search(run_dir):
    clf = Predictor.load(run_dir, verbose=False)
    with TestClient(create_app(clf, ServeConfig())) as c:
        for route in ("/embed", "/search"):
            r = c.post(route, json={"rows": [{}]})
            assert r.status_code == 400 and "/predict" in r.json()["error"]
    with pytest.raises(ConfigError, match="retrieval models"):
        create_app(clf, ServeConfig(collection="items.csv"))


def test_cli_serve_refuses_a_missing_collection(retriever, tmp_path):
    run = retriever.save(tmp_path / "run")
    res = CliRunner().invoke(cli_app, ["serve", str(run), "--port", "0", "--collection", str(tmp_path / "none.csv")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_report_has_a_retrieval_section_with_both_directions_and_examples(retriever, pairs):
    from polymodal.reporting.blocks import Gallery, Table
    from polymodal.reporting.build import build_report
    from polymodal.reporting.context import ReportOptions, fmt
    from polymodal.reporting.render import render

    rep = build_report(retriever, pairs.test, options=ReportOptions(n_examples=3, n_bootstrap=0))
    sections = {s.id: s for s in rep.sections}
    assert {"summary", "training", "metrics", "retrieval"} <= set(sections)
    table = next(b for b in sections["retrieval"].blocks if isinstance(b, Table))
    m = retriever.evaluate(pairs.test)
    by_name = {row[0]: row[1:] for row in table.rows}
    for key, name in (("recall@1", "Recall@1"), ("recall@10", "Recall@10"), ("mrr", "MRR")):
        assert by_name[name][:2] == [fmt(m[f"q2t_{key}"]), fmt(m[f"t2q_{key}"])]
    assert by_name["median rank"][:2] == [fmt(m["q2t_median_rank"]), fmt(m["t2q_median_rank"])]
    assert by_name["Recall@10"][2] == fmt(10 / 12)  # random ranking among the 12 test targets
    gallery = next(b for b in sections["retrieval"].blocks if isinstance(b, Gallery))
    assert len(gallery.figures) == 3 and all(f.png.startswith(b"\x89PNG") for f in gallery.figures)
    assert all("its own target" in f.caption for f in gallery.figures)
    html = render(rep)
    assert "Recall@10" in html and "query → target" in html


def test_serve_defaults_to_the_runs_saved_index(retriever, pairs, tmp_path):
    pytest.importorskip("usearch")
    from polymodal.cli import _serve_collection
    from polymodal.retrieval import build_index

    run = retriever.save(tmp_path / "run")
    assert _serve_collection(run, None) is None  # nothing saved: /search answers 409
    vecs = retriever.embed(pairs.test, side="target", data_root=pairs.root)
    build_index(retriever.pipeline, vecs, run)
    saved = _serve_collection(run, None)
    assert saved == str(run / "search_index")
    with TestClient(create_app(Predictor.load(run, verbose=False), ServeConfig(collection=saved))) as c:
        r = c.post("/search", params={"k": 3}, json={"rows": caption_rows(pd.read_csv(pairs.test).head(2))})
        assert r.status_code == 200, r.text
        exact = retriever.search(pd.read_csv(pairs.test).head(2), vecs, k=3, data_root=pairs.root)
        # an index of 12 vectors finds the exact top 3
        assert [[h["target"] for h in row] for row in r.json()["hits"]] == exact.indices.tolist()
