"""One tiny table in every input form (CSV with paths; Parquet with image/audio bytes, as one file, a folder and a
glob; a Hugging Face Dataset with Image/Audio features; a Polars DataFrame; decoded Pillow images and audio arrays)
gives the same predictions from one model; bytes in cells go through the loader limits and the sample store."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from conftest import tiny_config
from PIL import Image

from polymodal import Predictor
from polymodal.config import LimitsConfig
from polymodal.data.batches import iter_table
from polymodal.data.cells import media_cells, sniff
from polymodal.data.loaders import InMemoryFile
from polymodal.data.processors import LoadContext
from polymodal.data.readers import read_table
from polymodal.data.stored import file_key
from polymodal.datasets.synthetic import generate
from polymodal.errors import DataError
from polymodal.schema import ColumnKind, infer_schema


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("inputs")
    frame = generate(root, 40, seed=3, missing_rate=0.0)
    frame["label"] = frame["label"].map(lambda v: "yes" if v == "medium" else "no")
    frame.to_csv(root / "data.csv", index=False)
    return root, frame


@pytest.fixture(scope="module")
def model(table) -> Predictor:
    root, _ = table
    return Predictor("label", config=tiny_config(max_epochs=1), preset="fast", verbose=False, seed=0).fit(
        root / "data.csv"
    )


def _bytes(root: Path, paths: pd.Series) -> list[bytes]:
    return [(root / p).read_bytes() for p in paths]


def _with_bytes(root: Path, frame: pd.DataFrame, structs: bool) -> pd.DataFrame:
    out = frame.copy()
    for column in ("image", "audio"):
        data = _bytes(root, frame[column])
        out[column] = [{"bytes": b, "path": Path(p).name} for b, p in zip(data, frame[column])] if structs else data
    return out


def _hf_dataset(root: Path, frame: pd.DataFrame):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "image": datasets.Image(),
            # datasets encodes Audio values through torchcodec: write the struct and cast it to the feature instead
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "text": datasets.Value("string"),
            "reading": datasets.Value("float64"),
            "region": datasets.Value("string"),
            "label": datasets.Value("string"),
        }
    )
    columns = {c: frame[c].tolist() for c in ("text", "reading", "region", "label")}
    columns["image"] = [{"bytes": b, "path": None} for b in _bytes(root, frame["image"])]
    columns["audio"] = [{"bytes": b, "path": None} for b in _bytes(root, frame["audio"])]
    ds = datasets.Dataset.from_dict(columns, features=features)
    return ds.cast_column("audio", datasets.Audio())


def _decoded(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Cells as a notebook holds them after decoding: Pillow images and {"array", "sampling_rate"} dicts."""
    out = frame.copy()
    out["image"] = [Image.open(root / p) for p in frame["image"]]
    audio = []
    for p in frame["audio"]:
        samples, rate = sf.read(root / p, dtype="float32")
        audio.append({"array": samples, "sampling_rate": rate, "path": None})
    out["audio"] = audio
    return out


def test_every_input_form_gives_identical_predictions(table, model, tmp_path):
    root, frame = table
    expected = model.predict_proba(root / "data.csv")
    inputs: dict[str, object] = {}
    structs = _with_bytes(root, frame, structs=True)
    structs.to_parquet(tmp_path / "structs.parquet")
    inputs["parquet structs"] = tmp_path / "structs.parquet"
    _with_bytes(root, frame, structs=False).to_parquet(tmp_path / "raw.parquet")
    inputs["parquet raw bytes"] = tmp_path / "raw.parquet"
    (tmp_path / "parts").mkdir()
    structs.iloc[:25].to_parquet(tmp_path / "parts" / "part-0.parquet")
    structs.iloc[25:].to_parquet(tmp_path / "parts" / "part-1.parquet")
    inputs["parquet folder"] = tmp_path / "parts"
    inputs["parquet glob"] = str(tmp_path / "parts" / "part-*.parquet")
    inputs["hf dataset"] = _hf_dataset(root, frame)
    inputs["hf dataset dict"] = pytest.importorskip("datasets").DatasetDict({"test": inputs["hf dataset"]})
    polars = pytest.importorskip("polars")
    inputs["polars"] = polars.from_pandas(structs)
    inputs["decoded cells"] = _decoded(root, frame)
    for name, data in inputs.items():
        got = model.predict_proba(data)
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-6, err_msg=name)
        assert list(model.predict(data)) == list(model.predict(root / "data.csv")), name
    # chunked: a Parquet folder read a few rows at a time, as the CSV is (a chunk's rows are batched together)
    chunked = model.predict_proba(tmp_path / "parts", chunk_rows=7)
    by_csv = model.predict_proba(root / "data.csv", chunk_rows=7)
    np.testing.assert_allclose(chunked.to_numpy(), by_csv.to_numpy(), atol=1e-6)


def test_fit_on_bytes_matches_fit_on_paths(table):
    root, frame = table
    cfg = tiny_config(max_epochs=1)
    on_paths = Predictor("label", config=cfg, preset="fast", verbose=False).fit(root / "data.csv")
    on_bytes = Predictor("label", config=cfg, preset="fast", verbose=False).fit(_with_bytes(root, frame, True))
    probe = root / "data.csv"
    np.testing.assert_allclose(on_bytes.predict_proba(probe), on_paths.predict_proba(probe), atol=1e-6)


def test_bytes_cells_are_inferred_as_image_and_audio(table):
    root, frame = table
    read = read_table(_with_bytes(root, frame, structs=False))
    kinds = infer_schema(read.frame, "label").kinds()
    assert kinds["image"] == ColumnKind.IMAGE and kinds["audio"] == ColumnKind.AUDIO
    assert isinstance(read.frame["image"].iloc[0], InMemoryFile)
    assert read.frame["image"].iloc[0].name.endswith(".png")


def test_bad_and_oversized_bytes_are_load_errors_with_row_and_column(table, model):
    root, frame = table
    bad = _with_bytes(root, frame, structs=True)
    bad.at[3, "image"] = {"bytes": b"\x89PNG\r\n\x1a\n truncated", "path": None}
    with pytest.raises(DataError) as caught:
        model.predict(bad, on_error="fail")
    text = str(caught.value)
    assert "image" in text and "3" in text
    # the size limit counts an in-cell file's bytes as it counts a file's
    tight = Predictor.load(model.save(root / "tight-run"))
    tight.pipeline.config.limits.max_file_bytes = 100
    with pytest.raises(DataError, match="max_file_bytes"):
        tight.predict(_with_bytes(root, frame, structs=True).iloc[:2], on_error="fail")


def test_sample_store_keys_bytes_by_content(table):
    root, frame = table
    data = (root / frame["image"].iloc[0]).read_bytes()
    ctx = LoadContext(root, LimitsConfig())
    a, b = InMemoryFile(data, "x.png", cache=True), InMemoryFile(bytes(data), "y.png", cache=True)
    assert file_key(a, ctx) == file_key(b, ctx) is not None
    assert file_key(InMemoryFile(data + b"\0", "x.png", cache=True), ctx) != file_key(a, ctx)
    assert file_key(InMemoryFile(data, "upload.png"), ctx) is None  # the server's uploads stay off disk


def test_struct_with_path_only_is_a_path_and_text_bytes_stay_text():
    frame = pd.DataFrame(
        {
            "image": [{"bytes": None, "path": "a.png"}, None],
            "blob": [b"hello there", b"general kenobi"],
        }
    )
    out = media_cells(frame)
    assert out["image"].iloc[0] == "a.png" and pd.isna(out["image"].iloc[1])
    assert out["blob"].tolist() == [b"hello there", b"general kenobi"]
    assert frame["image"].iloc[0] == {"bytes": None, "path": "a.png"}  # the caller's frame is untouched


def test_sniff_knows_the_formats_the_loaders_decode():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="JPEG")
    assert sniff(buf.getvalue()) == ".jpg"
    wav = io.BytesIO()
    sf.write(wav, np.zeros(100, np.float32), 8000, format="WAV")
    assert sniff(wav.getvalue()) == ".wav"
    flac = io.BytesIO()
    sf.write(flac, np.zeros(100, np.float32), 8000, format="FLAC")
    assert sniff(flac.getvalue()) == ".flac"
    assert sniff(b"plain text") is None


def test_folder_without_parquet_and_dataset_dict_with_splits_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no Parquet files"):
        read_table(str(tmp_path / "*.parquet"))
    datasets = pytest.importorskip("datasets")
    two = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"a": [1]}), "test": datasets.Dataset.from_dict({"a": [2]})}
    )
    with pytest.raises(DataError, match="several splits"):
        read_table(two)
    with pytest.raises(DataError, match="cannot read a"):
        read_table(object())


def test_chunks_of_a_parquet_glob_keep_row_numbers(table, tmp_path):
    root, frame = table
    structs = _with_bytes(root, frame, structs=True)
    for i in range(0, 40, 15):
        pq.write_table(pa.Table.from_pandas(structs.iloc[i : i + 15], preserve_index=False), tmp_path / f"p{i:02}.pq")
    chunks = list(iter_table(str(tmp_path / "*.pq"), chunk_rows=10))
    assert sum(len(c.frame) for c in chunks) == 40
    assert list(pd.concat([c.frame for c in chunks]).index) == list(range(40))
    assert all(isinstance(v, InMemoryFile) for c in chunks for v in c.frame["audio"])


def test_second_fit_on_the_same_bytes_decodes_nothing(table, tmp_path, monkeypatch):
    from polymodal.data import sample_cache

    root, frame = table
    monkeypatch.setenv("POLYMODAL_SAMPLE_CACHE", str(tmp_path / "samples"))
    data = _with_bytes(root, frame, structs=True)

    def fit() -> None:
        Predictor("label", config=tiny_config(max_epochs=1), preset="fast", verbose=False).fit(data)

    fit()
    store = sample_cache.sample_store()
    assert store is not None and store.misses > 0
    entries = store.info()["entries"]
    assert entries >= 2 * len(frame)  # every image and audio cell, keyed by its content
    store.hits = store.misses = 0
    fit()
    assert store.misses == 0 and store.hits >= entries
