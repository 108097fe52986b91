"""Bad input: every case names the row/column/problem, exits 2 from the CLI, and leaves no partial output.

File-level cases run through both ``fit --out DIR`` and ``predict RUN TABLE --out FILE``; a failed command must
leave neither the output nor the temp sibling (``.DIR.*.tmp`` / ``.FILE.*.tmp``) that atomic writes use.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from polymodal import Predictor
from polymodal.config import LimitsConfig
from polymodal.data import loaders
from polymodal.errors import DataError, LoadError

MODES = ["fit", "predict"]


def run_cli(cli, mode: str, table: Path, run_dir: Path, config: Path, tmp_path: Path, *extra: str):
    """Run ``fit`` or ``predict`` writing into tmp_path/out; return (result, output path)."""
    out_base = tmp_path / "out"
    out_base.mkdir(exist_ok=True)
    if mode == "fit":
        out = out_base / "run"
        r = cli("fit", table, "--label", "label", "--out", out, "--config", config, "--quiet", *extra)
    else:
        out = out_base / "preds.csv"
        r = cli("predict", run_dir, table, "--out", out, "--quiet", *extra)
    return r, out


def assert_failed_cleanly(result, out: Path | None, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    msg = " ".join(result.stderr.split())
    assert msg.startswith("error:"), msg
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    if out is not None:
        assert not out.exists(), f"{out} was (partly) written"
        assert not list(out.parent.glob(f".{out.name}.*")), "temp files left behind"
    return msg


def _row_with(frame: pd.DataFrame, col: str, row: int) -> str:
    value = frame.loc[row, col]
    assert isinstance(value, str) and value, "fixture rows must have a file in this column"
    return value


# --------------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("mode", MODES)
def test_corrupt_image(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path):
    frame = pd.read_csv(tiny_data)
    (tiny_data.parent / _row_with(frame, "image", 3)).write_bytes(np.random.default_rng(0).bytes(700))
    r, out = run_cli(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path)
    assert_failed_cleanly(r, out, "row 3, column 'image'", "not a readable image", "--on-error skip")


@pytest.mark.parametrize("mode", MODES)
def test_truncated_wav(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path):
    frame = pd.read_csv(tiny_data)
    path = tiny_data.parent / _row_with(frame, "audio", 4)
    path.write_bytes(path.read_bytes()[:30])  # a RIFF header cut off mid-way
    r, out = run_cli(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path)
    msg = assert_failed_cleanly(r, out, "row 4, column 'audio'")
    assert "audio" in msg.split("row 4, column 'audio'")[1]


@pytest.mark.parametrize("mode", MODES)
def test_random_bytes_wav(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path):
    frame = pd.read_csv(tiny_data)
    (tiny_data.parent / _row_with(frame, "audio", 8)).write_bytes(np.random.default_rng(1).bytes(5000))
    r, out = run_cli(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path)
    assert_failed_cleanly(r, out, "row 8, column 'audio'", "not a readable audio file")


@pytest.mark.parametrize("mode", MODES)
def test_missing_file(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path):
    frame = pd.read_csv(tiny_data)
    os.remove(tiny_data.parent / _row_with(frame, "image", 11))
    r, out = run_cli(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path)
    assert_failed_cleanly(r, out, "row 11, column 'image'", "file not found", "t_00011.png")


def _files_outside_the_root(table: Path) -> None:
    """Point row 2's image at '../outside.png' and row 5's at an absolute path, both outside the table's folder."""
    root = table.parent
    frame = pd.read_csv(table)
    for row, target in ((2, root.parent / "outside.png"), (5, root.parent / "elsewhere" / "abs.png")):
        target.parent.mkdir(exist_ok=True)
        target.write_bytes((root / _row_with(frame, "image", row)).read_bytes())  # a perfectly good image
    frame.loc[2, "image"] = "../outside.png"
    frame.loc[5, "image"] = str(root.parent / "elsewhere" / "abs.png")
    frame.to_csv(table, index=False)


def _confined(config: Path, out: Path) -> Path:
    """``config`` (a YAML file, e.g. a run directory's config.yaml) written to ``out`` with limits.confine_to_root on."""
    import yaml

    cfg = yaml.safe_load(config.read_text("utf-8"))
    cfg.setdefault("limits", {})["confine_to_root"] = True
    out.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return out


@pytest.mark.parametrize("mode", MODES)
def test_absolute_and_parent_paths_are_read_by_default(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path):
    _files_outside_the_root(tiny_data)
    r, out = run_cli(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path)
    assert r.exit_code == 0, r.stderr
    assert out.exists()


def _confined_run(run_dir, dest):
    """The run saved again with limits.confine_to_root on (editing its config.yaml by hand would be refused: the
    run directory's manifest no longer matches)."""
    p = Predictor.load(run_dir, verbose=False)
    p.pipeline.config.limits.confine_to_root = True
    p.save(dest)
    return dest


@pytest.mark.parametrize("mode", MODES)
def test_confined_paths_outside_the_data_root_are_refused(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path):
    _files_outside_the_root(tiny_data)
    config = _confined(tiny_config_file, tmp_path / "confined.yaml")
    confined_run = _confined_run(run_dir, tmp_path / "confined_run")
    r, out = run_cli(cli, mode, tiny_data, confined_run, config, tmp_path)
    msg = assert_failed_cleanly(
        r,
        out,
        "row 2, column 'image': path '../outside.png' resolves outside the data root",
        "row 5, column 'image'",
        "pass --data-root a folder",
        "limits.confine_to_root: false",
    )
    assert "data_root=" not in msg  # the CLI's terms, not Python's


def test_confinement_names_the_python_options_from_python(run_dir, tiny_data, tmp_path):
    from polymodal import Predictor

    _files_outside_the_root(tiny_data)
    confined_run = _confined_run(run_dir, tmp_path / "confined_run")
    with pytest.raises(DataError, match="resolves outside the data root") as e:
        Predictor.load(confined_run, verbose=False).predict(tiny_data)
    assert "pass data_root= a folder" in str(e.value) and "limits.confine_to_root=False" in str(e.value)
    assert "--data-root" not in str(e.value)


def test_resolve_path_confinement(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "x.png"
    outside.write_bytes(b"")
    (root / "sub" / "ok.png").write_bytes(b"")
    # unconfined (the default): absolute and ../ paths are the user's own files
    assert loaders.resolve_path(str(outside), root, confine=False) == outside
    assert loaders.resolve_path("../x.png", root, confine=False) == outside
    with pytest.raises(LoadError, match="outside the data root"):
        loaders.resolve_path(str(outside), root, confine=True)
    with pytest.raises(LoadError, match="outside the data root"):
        loaders.resolve_path("../x.png", root, confine=True)
    assert loaders.resolve_path("sub/../sub/ok.png", root, confine=True) == (root / "sub" / "ok.png").resolve()
    # no data root (the server): no path is ever opened, confined or not
    with pytest.raises(LoadError, match="not accepted here"):
        loaders.resolve_path(str(outside), None, confine=False)


# ------------------------------------------------------------------------------------------------ limits
def write_blank_png(path: Path, width: int, height: int) -> None:
    """A valid 1-bit PNG of any size, written row by row (PIL's Image.new would hold every pixel in memory)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture
def bomb_png(tmp_path) -> Path:
    path = tmp_path / "bomb.png"
    write_blank_png(path, 20_000, 20_000)
    assert path.stat().st_size < 2_000_000  # 400 million pixels in a small file: a decompression bomb
    return path


def test_bomb_png_is_a_real_20000_square_png(bomb_png, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(bomb_png) as im:
        assert im.size == (20_000, 20_000) and im.format == "PNG"


def test_bomb_refused_by_header_before_decoding(bomb_png, monkeypatch):
    from PIL import ImageFile

    def no_decode(self, *a, **k):
        raise AssertionError("the loader started decoding a decompression bomb")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(LoadError, match="pixels"):
        loaders.load_image(bomb_png, LimitsConfig(), 3)


def test_polymodal_pixel_limit_applies_below_pillows_own(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = tmp_path / "big.png"
    write_blank_png(path, 7_000, 7_000)  # 49 M pixels: over polymodal's 40 M default, under Pillow's hard limit
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self, *a, **k: pytest.fail("decoded"))
    with pytest.raises(LoadError, match=r"7000x7000 = 49,000,000 pixels, over the limit of 40,000,000"):
        loaders.load_image(path, LimitsConfig(), 3)


def put_file(table: Path, src: Path, rel: str, row: int, column: str) -> None:
    """Move ``src`` into the table's folder as ``rel`` and point ``row``'s ``column`` at it."""
    frame = pd.read_csv(table)
    os.replace(src, table.parent / rel)
    frame.loc[row, column] = rel
    frame.to_csv(table, index=False)


@pytest.mark.parametrize("mode", MODES)
def test_decompression_bomb_png(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path, bomb_png):
    put_file(tiny_data, bomb_png, "images/bomb.png", 5, "image")
    r, out = run_cli(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path)
    msg = assert_failed_cleanly(r, out, "row 5, column 'image'")
    assert "pixels" in msg.split("row 5, column 'image'")[1]


@pytest.fixture
def two_hour_wav(tmp_path) -> Path:
    """A real 2-hour WAV, kept small by a low rate and 8-bit samples: 7.2 million frames, 7.2 MB."""
    path = tmp_path / "long.wav"
    rate, seconds = 1000, 7200
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_U8", format="WAV") as f:
        block = np.zeros(720_000, np.float32)
        for _ in range(seconds * rate // len(block)):
            f.write(block)
    info = sf.info(str(path))
    assert info.frames == rate * seconds and info.duration == pytest.approx(7200)
    return path


def test_long_audio_refused_by_header(two_hour_wav, monkeypatch):
    monkeypatch.setattr(sf, "read", lambda *a, **k: pytest.fail("decoded a 2-hour file"))
    with pytest.raises(LoadError, match=r"audio is 7200.0 s long, over the limit of 600 s"):
        loaders.load_audio(two_hour_wav, LimitsConfig(), 8000)


@pytest.mark.parametrize("mode", MODES)
def test_two_hour_wav(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path, two_hour_wav):
    put_file(tiny_data, two_hour_wav, "audio/long.wav", 9, "audio")
    r, out = run_cli(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path)
    assert_failed_cleanly(r, out, "row 9, column 'audio'", "7200.0 s long", "max_audio_seconds")


# ------------------------------------------------------------------------------------------------ tables
@pytest.mark.parametrize("mode", MODES)
def test_non_utf8_table(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path):
    frame = pd.read_csv(tiny_data)
    frame.loc[5, "text"] = "honestly the café was très bon"
    frame.to_csv(tiny_data, index=False, encoding="latin-1")
    r, out = run_cli(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path)
    assert_failed_cleanly(r, out, "not UTF-8", "byte 0xe9", "line 7", "row 5", "iconv")


@pytest.mark.parametrize("mode", MODES)
def test_empty_table_header_only(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path):
    pd.read_csv(tiny_data).iloc[:0].to_csv(tiny_data, index=False)
    assert tiny_data.read_text().count("\n") == 1
    r, out = run_cli(cli, mode, tiny_data, run_dir, tiny_config_file, tmp_path)
    assert_failed_cleanly(r, out, "has no rows")


def test_empty_file(cli, tiny_data, run_dir, tmp_path):
    tiny_data.write_bytes(b"")
    out = tmp_path / "p.csv"
    r = cli("predict", run_dir, tiny_data, "--out", out, "--quiet")
    assert_failed_cleanly(r, out, "is empty", "no header")


def test_label_column_absent(cli, tiny_data, tiny_config_file, tmp_path, run_dir):
    out = tmp_path / "run"
    r = cli("fit", tiny_data, "--label", "target", "--out", out, "--config", tiny_config_file, "--quiet")
    assert_failed_cleanly(r, out, "label column 'target' is not in the training table", "image, audio, text")
    frame = pd.read_csv(tiny_data).drop(columns=["label"])
    frame.to_csv(tiny_data, index=False)
    r = cli("evaluate", run_dir, tiny_data, "--quiet")
    assert_failed_cleanly(r, None, "label column 'label' is not in the evaluation table")


def test_label_all_nan(cli, tiny_data, tiny_config_file, tmp_path, run_dir):
    frame = pd.read_csv(tiny_data)
    frame["label"] = np.nan
    frame.to_csv(tiny_data, index=False)
    out = tmp_path / "run"
    r = cli("fit", tiny_data, "--label", "label", "--out", out, "--config", tiny_config_file, "--quiet")
    assert_failed_cleanly(r, out, "label column 'label' has no values", "all 40 rows are empty/NaN")
    r = cli("evaluate", run_dir, tiny_data, "--quiet")
    assert_failed_cleanly(r, None, "label column 'label' has no values")


def test_predict_columns_differ_from_training(cli, tiny_data, run_dir, tmp_path):
    frame = pd.read_csv(tiny_data)
    frame.drop(columns=["text"]).to_csv(tiny_data, index=False)
    out = tmp_path / "p.csv"
    r = cli("predict", run_dir, tiny_data, "--out", out, "--quiet")
    assert_failed_cleanly(r, out, "lacks column(s) the model was trained on: text")
    # extra columns are fine
    frame.assign(extra=1, note="x").to_csv(tiny_data, index=False)
    r = cli("predict", run_dir, tiny_data, "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert len(pd.read_csv(out)) == 40


def test_errors_list_every_bad_row(cli, tiny_data, run_dir, tmp_path):
    root = tiny_data.parent
    frame = pd.read_csv(tiny_data)
    for i in (1, 12, 30):
        os.remove(root / frame.loc[i, "image"])
    (root / frame.loc[20, "audio"]).write_bytes(b"RIFF")
    out = tmp_path / "p.csv"
    r = cli("predict", run_dir, tiny_data, "--out", out, "--quiet")
    assert_failed_cleanly(
        r,
        out,
        "4 of 40 rows",
        "row 1, column 'image'",
        "row 12, column 'image'",
        "row 20, column 'audio'",
        "row 30, column 'image'",
    )


# --------------------------------------------------------------------------------------- handled cases
def test_nan_numerics_are_imputed_and_flagged(cli, fitted, tiny_data, tiny_config_file, tmp_path):
    frame = pd.read_csv(tiny_data)
    frame.loc[[0, 3, 7], "reading"] = np.nan
    frame.loc[10, "reading"] = np.inf
    frame.to_csv(tiny_data, index=False)
    run = tmp_path / "run"
    r = cli("fit", tiny_data, "--label", "label", "--out", run, "--config", tiny_config_file, "--quiet")
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "p.csv"
    r = cli("predict", run, tiny_data, "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert len(pd.read_csv(out)) == 40
    # the statistics ignore the NaN/inf rows, and those rows are imputed (0 = the training mean) and flagged
    from polymodal import Predictor

    p = Predictor.load(run, verbose=False)
    proc = p.processors["tabular"]
    assert np.isfinite(proc.stats["reading"]["mean"]) and np.isfinite(proc.stats["reading"]["std"])
    from polymodal.data.processors import LoadContext

    ctx = LoadContext(tiny_data.parent, p.config.limits)
    for v in (np.nan, np.inf):
        num, _ = proc.load({"reading": v, "region": "north"}, ctx)
        assert num.tolist() == [[0.0, 1.0]]
    num, _ = proc.load({"reading": 0.25, "region": "north"}, ctx)
    assert num[0, 1] == 0.0
    proba = fitted.predict_proba(tiny_data)
    assert np.isfinite(proba.to_numpy()).all()


def test_unseen_category_maps_to_unknown_with_a_warning(fitted, tiny_data, caplog):
    frame = pd.read_csv(tiny_data)
    frame.loc[[2, 5], "region"] = ["atlantis", "mars"]
    frame.to_csv(tiny_data, index=False)
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        preds = fitted.predict(tiny_data)
    assert len(preds) == 40 and set(preds) <= {"no", "yes"}
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert any("column 'region'" in w and "2 rows" in w and "rows 2, 5" in w and "'unknown'" in w for w in warnings), (
        warnings
    )


def test_unseen_category_cli_succeeds_and_warns(cli, tiny_data, run_dir, tmp_path):
    frame = pd.read_csv(tiny_data)
    frame.loc[4, "region"] = "atlantis"
    frame.to_csv(tiny_data, index=False)
    out = tmp_path / "p.csv"
    r = cli("predict", run_dir, tiny_data, "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "region" in r.stderr and "rows 4" in r.stderr
    assert len(pd.read_csv(out)) == 40


def test_api_raises_data_error_with_issues(fitted, tiny_data):
    frame = pd.read_csv(tiny_data)
    os.remove(tiny_data.parent / frame.loc[6, "audio"])
    with pytest.raises(DataError) as e:
        fitted.predict(tiny_data)
    assert [(i.row, i.column) for i in e.value.issues] == [(6, "audio")]
    assert "file not found" in e.value.issues[0].problem
