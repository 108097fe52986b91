"""Tables read in chunks and predicted / evaluated chunk by chunk: the same results as the whole table at once, and
an output file that appears complete or not at all."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from polymodal import Predictor
from polymodal.data.batches import iter_table, table_rows
from polymodal.data.readers import read_table
from polymodal.errors import DataError


@pytest.fixture(scope="module")
def fitted(train_csv) -> Predictor:
    """A tiny classifier whose outputs do not depend on which rows share a batch (the default ``text_rnn`` reads a
    batch's padding in its backward direction), so that chunked and whole-table outputs are equal to float
    rounding."""
    cfg = tiny_config(max_epochs=1)
    cfg["encoders"]["text"] = {"name": "text_transformer", "dim": 16, "layers": 1, "heads": 2}
    return Predictor("label", config=cfg, verbose=False, seed=0, preset="fast").fit(train_csv)


@pytest.fixture(scope="module")
def run_dir(fitted, tmp_path_factory):
    return fitted.save(tmp_path_factory.mktemp("chunked") / "run")


def _close(a: pd.DataFrame | pd.Series, b: pd.DataFrame | pd.Series) -> None:
    """Equal up to float rounding (a batch of 7 rows and one of 30 sum in another order)."""
    if isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-6)
    else:
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-6)


def _chunked(path, n: int) -> pd.DataFrame:
    parts = list(iter_table(path, chunk_rows=n))
    assert all(len(p.frame) <= n for p in parts)
    return pd.concat([p.frame for p in parts])


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl", "json"])
def test_batched_reading_equals_read_table(small_frame, tmp_path, fmt):
    frame = small_frame
    path = tmp_path / f"t.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "parquet":
        frame.to_parquet(path)  # with its index stored, which read_table drops
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_json(path, orient="records")
    whole = read_table(path).frame
    chunks = list(iter_table(path, chunk_rows=7))
    assert [len(c.frame) for c in chunks] == [7, 7, 7, 7, 2]
    assert [c.frame.index[0] for c in chunks] == [0, 7, 14, 21, 28]  # each chunk's index continues the last one's
    assert all(c.root == tmp_path.resolve() and c.source == str(path) for c in chunks)
    got = pd.concat([c.frame for c in chunks])
    # chunk-wise type inference may see a column without NaN as int where the whole table has float
    pd.testing.assert_frame_equal(got, whole, check_dtype=False)
    assert table_rows(path) == (None if fmt == "json" else 30)  # a JSON array is not counted without parsing it


def test_batched_reading_of_a_dataframe_keeps_its_index(small_frame):
    frame = small_frame.set_index(pd.Index([f"r{i}" for i in range(len(small_frame))]))
    got = _chunked(frame, 4)
    pd.testing.assert_frame_equal(got, frame)


def test_batched_reading_errors_as_read_table(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b\n" + b"x,1\n" * 20 + b"caf\xe9,2\n")
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 0xe9 at offset 87, line 22\)"):
        read_table(bad)
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 0xe9 at offset 87, line 22\)"):
        list(iter_table(bad, chunk_rows=5))
    dup = tmp_path / "dup.csv"
    dup.write_text("a,a\n1,2\n", encoding="utf-8")
    with pytest.raises(DataError, match="duplicate column names: 'a'"):
        list(iter_table(dup, chunk_rows=5))
    unknown = tmp_path / "t.xlsx"
    unknown.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="unknown table format"):
        list(iter_table(unknown))
    with pytest.raises(DataError, match="chunk_rows must be at least 1"):
        list(iter_table(dup, chunk_rows=0))
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n", encoding="utf-8")
    chunks = list(iter_table(empty, chunk_rows=5))
    assert len(chunks) == 1 and list(chunks[0].frame.columns) == ["a", "b"] and len(chunks[0].frame) == 0


def test_chunked_predict_and_evaluate_equal_whole_table(fitted, test_csv):
    whole = fitted.predict(test_csv)
    chunked = fitted.predict(test_csv, chunk_rows=7)
    _close(chunked, whole)
    _close(fitted.predict_proba(test_csv, chunk_rows=7), fitted.predict_proba(test_csv))
    m_whole, m_chunk = fitted.evaluate(test_csv), fitted.evaluate(test_csv, chunk_rows=7)
    assert m_chunk.keys() == m_whole.keys()
    for k in m_whole:
        assert m_chunk[k] == pytest.approx(m_whole[k], rel=1e-5, abs=1e-6), k
    # a DataFrame with its own index: predictions keep it
    frame = pd.read_csv(test_csv)
    frame.index = frame.index + 100
    _close(
        fitted.predict(frame, data_root=test_csv.parent, chunk_rows=4), fitted.predict(frame, data_root=test_csv.parent)
    )


def test_chunked_evaluate_with_empty_labels_and_skipped_rows(fitted, test_csv, tmp_path):
    frame = pd.read_csv(test_csv)
    frame.loc[0:8, "label"] = None  # the first chunk (of 9) has no label at all: skipped
    frame.loc[15, "image"] = "no_such_file.png"
    path = test_csv.parent / "partly_labelled.csv"
    frame.to_csv(path, index=False)
    whole = fitted.evaluate(path, on_error="skip")
    chunked = fitted.evaluate(path, on_error="skip", chunk_rows=9)
    assert whole["rows"] == chunked["rows"] == 20
    for k in whole:
        assert chunked[k] == pytest.approx(whole[k], rel=1e-5, abs=1e-6), k
    _close(fitted.predict(path, on_error="skip", chunk_rows=9), fitted.predict(path, on_error="skip"))
    frame["label"] = None
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="label column 'label' has no values: all 30 rows"):
        fitted.evaluate(path, chunk_rows=9)


def _config() -> dict:
    cfg = tiny_config(max_epochs=1)
    cfg["encoders"]["text"] = {"name": "text_transformer", "dim": 16, "layers": 1, "heads": 2}
    return cfg


def test_chunked_regression(train_csv, test_csv):
    p = Predictor("reading", config=_config(), verbose=False, seed=0, preset="fast").fit(train_csv)
    _close(p.predict(test_csv, chunk_rows=8), p.predict(test_csv))
    whole, chunked = p.evaluate(test_csv), p.evaluate(test_csv, chunk_rows=8)
    for k in whole:
        assert chunked[k] == pytest.approx(whole[k], rel=1e-5, abs=1e-6), k


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_predict_to_writes_every_format(fitted, test_csv, tmp_path, suffix):
    out = tmp_path / f"preds{suffix}"
    done = fitted.predict_to(test_csv, out, proba=True, chunk_rows=7)
    assert done.rows == 30 and done.path == out
    got = read_table(out).frame
    assert list(got.columns) == ["row", "prediction", "proba_no", "proba_yes"]
    assert got["row"].tolist() == list(range(30))
    assert got["prediction"].tolist() == fitted.predict(test_csv).tolist()
    expected = fitted.predict_proba(test_csv)
    assert np.allclose(got[["proba_no", "proba_yes"]].to_numpy(), expected.to_numpy())
    assert not list(tmp_path.glob(".preds*"))  # no temp file left behind


def test_cli_predict_chunked_output_is_complete(cli, run_dir, test_csv, tmp_path):
    out = tmp_path / "preds.parquet"
    r = cli("predict", run_dir, test_csv, "--out", out, "--proba", "--chunk-rows", "7", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "wrote 30 predictions" in r.stderr
    got = pd.read_parquet(out)
    assert got["row"].tolist() == list(range(30))
    r = cli("predict", run_dir, test_csv, "--chunk-rows", "7", "--quiet")  # stdout: one header
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == "row,prediction" and len(r.stdout.splitlines()) == 31
    r = cli("evaluate", run_dir, test_csv, "--chunk-rows", "7", "--json", "--quiet")
    assert r.exit_code == 0
    whole = json.loads(cli("evaluate", run_dir, test_csv, "--json", "--quiet").stdout)
    assert json.loads(r.stdout) == pytest.approx(whole)
    r = cli("predict", run_dir, test_csv, "--chunk-rows", "0")
    assert r.exit_code == 2 and "--chunk-rows" in r.stderr


def test_failure_midway_leaves_no_output_file(cli, run_dir, test_csv, tmp_path):
    frame = pd.read_csv(test_csv)
    frame.loc[25, "image"] = "no_such_file.png"  # in the fourth chunk of 7: three chunks are written first
    bad = test_csv.parent / "bad_row_25.csv"
    frame.to_csv(bad, index=False)
    for name in ("preds.csv", "preds.parquet"):
        out = tmp_path / name
        r = cli("predict", run_dir, bad, "--out", out, "--chunk-rows", "7", "--quiet")
        assert r.exit_code == 2 and "row 25" in r.stderr
        assert not out.exists()
        assert not list(tmp_path.iterdir())  # nor a temp file
    # an existing file under the name is left as it was
    out = tmp_path / "preds.csv"
    out.write_text("old\n", encoding="utf-8")
    r = cli("predict", run_dir, bad, "--out", out, "--chunk-rows", "7", "--quiet")
    assert r.exit_code == 2 and out.read_text(encoding="utf-8") == "old\n"


def test_chunked_multitask(train_csv, test_csv):
    multi = Predictor(["label", "reading"], config=_config(), verbose=False, seed=0, preset="fast").fit(train_csv)
    _close(multi.predict(test_csv, chunk_rows=8), multi.predict(test_csv))
    whole, chunked = multi.predict_proba(test_csv), multi.predict_proba(test_csv, chunk_rows=8)
    assert isinstance(whole, dict) and isinstance(chunked, dict) and whole.keys() == chunked.keys()
    for k in whole:
        _close(chunked[k], whole[k])
    mw, mc = multi.evaluate(test_csv), multi.evaluate(test_csv, chunk_rows=8)
    for k in mw:
        assert mc[k] == pytest.approx(mw[k], rel=1e-5, abs=1e-6), k


def test_chunked_progress_is_one_count_over_the_table(run_dir, test_csv, caplog):
    import logging

    p = Predictor.load(run_dir, verbose=True)
    with caplog.at_level(logging.INFO, logger="polymodal"):
        p.predict(test_csv, chunk_rows=7)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("predicting")]
    assert lines and lines[-1].startswith("predicting: 30/30 rows (100%)")
    assert not any(r.getMessage().startswith("decoding") for r in caplog.records)  # no bar per chunk
