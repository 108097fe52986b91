"""The time-series kind: inference, loading under limits, the processor, the encoders, fusions, bad input,
robustness corruptions. The data is generated here: sines whose frequency is the label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal import Predictor
from polymodal.config import LimitsConfig, PolymodalConfig
from polymodal.data.dataset import Collator, prepare
from polymodal.data.processors import LoadContext, build_processors
from polymodal.data.series import load_inline, load_series_file
from polymodal.data.timeseries import TimeSeriesProcessor, forward_fill
from polymodal.encoders import build_encoder
from polymodal.errors import LoadError
from polymodal.evaluation.corruptions import CORRUPTIONS
from polymodal.model import build_model
from polymodal.registry import FUSIONS
from polymodal.schema import ColumnKind, infer_column, infer_schema
from polymodal.tasks import build_task

TS_SMALL_PARAMS = {
    "ts_cnn": {"width": 8, "dim": 16, "stages": 2},
    "ts_gru": {"hidden": 16, "dim": 16},
    "ts_patchtst": {"dim": 16, "heads": 2, "layers": 1, "patch": 8},
}
SMALL = {
    "training": {"max_epochs": 12, "batch_size": 16, "learning_rate": 3e-3},
    "encoders": {"timeseries": {"name": "ts_cnn", "width": 8, "dim": 16, "stages": 2}},
    "fusion": {"dim": 16},
}


def _sine(rng: np.random.Generator, cycles: float, steps: int, channels: int) -> np.ndarray:
    t = np.arange(steps) / 48
    phase = rng.random(channels) * 2 * np.pi
    x = np.sin(2 * np.pi * cycles * t[:, None] + phase[None]) * (1 + rng.random(channels))
    return (x + 0.2 * rng.standard_normal((steps, channels))).astype(np.float32)


def make_sensor_table(out: Path, n: int, seed: int = 0, missing: bool = True) -> pd.DataFrame:
    """``n`` rows: ``acc`` (.npy, 2 channels), ``gyro`` (.csv with a header, 1 channel) and ``trace`` (inline JSON),
    variable lengths, label ``fast`` (3 cycles per 48 steps) or ``slow`` (1 cycle); a few absent cells."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        fast = i % 2 == 1
        cycles = 3.0 if fast else 1.0
        acc = _sine(rng, cycles, int(rng.integers(40, 64)), 2)
        np.save(out / f"acc{i}.npy", acc)
        gyro = _sine(rng, cycles, int(rng.integers(40, 64)), 1)
        pd.DataFrame({"gyro_z": gyro[:, 0]}).to_csv(out / f"gyro{i}.csv", index=False)
        trace = _sine(rng, cycles, int(rng.integers(30, 50)), 1)[:, 0].round(3).tolist()
        rows.append(
            {
                "acc": f"acc{i}.npy",
                "gyro": f"gyro{i}.csv",
                "trace": json.dumps(trace),
                "label": "fast" if fast else "slow",
            }
        )
    frame = pd.DataFrame(rows)
    if missing:
        frame.loc[2, "acc"] = None
        frame.loc[5, "gyro"] = None
    frame.to_csv(out / "sensors.csv", index=False)
    return frame


@pytest.fixture(scope="module")
def sensors(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sensors")
    make_sensor_table(folder, 64, seed=0)
    test = make_sensor_table(folder / "test", 24, seed=1, missing=False)
    test.to_csv(folder / "test" / "sensors.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def fitted_ts(sensors) -> Predictor:
    config = {**SMALL, "training": {**SMALL["training"], "modality_dropout": 0.2}}
    # preset fast: the network alone (the default would add the rocket member; these tests are about the network)
    return Predictor("label", config=config, verbose=False, seed=0, preset="fast").fit(sensors / "sensors.csv")


# ------------------------------------------------------------------------------------------------ inference
def test_inference_npy_csv_parquet_and_inline():
    for ext in (".npy", ".csv", ".parquet"):
        spec = infer_column(pd.Series([f"s/{i}{ext}" for i in range(30)], name="x"))
        assert spec.kind is ColumnKind.TIMESERIES and ext in spec.reason, spec
    inline = infer_column(pd.Series([json.dumps([i, i + 1.5, None]) for i in range(30)], name="x"))
    assert inline.kind is ColumnKind.TIMESERIES and "JSON arrays of numbers" in inline.reason
    steps_x_channels = infer_column(pd.Series([json.dumps([[i, 1], [2, 3]]) for i in range(30)], name="x"))
    assert steps_x_channels.kind is ColumnKind.TIMESERIES
    arrays = infer_column(pd.Series([np.arange(i + 2.0) for i in range(30)], name="x"))  # a Parquet list column
    assert arrays.kind is ColumnKind.TIMESERIES and "arrays of numbers" in arrays.reason
    tags = infer_column(pd.Series([json.dumps(["a", "b"]) for _ in range(30)], name="x"))
    assert tags.kind is not ColumnKind.TIMESERIES


def test_npy_path_column_is_never_text(sensors):
    frame = pd.read_csv(sensors / "sensors.csv")
    kinds = infer_schema(frame, "label").kinds()
    assert kinds == {"acc": ColumnKind.TIMESERIES, "gyro": ColumnKind.TIMESERIES, "trace": ColumnKind.TIMESERIES}
    many = pd.Series([f"recordings/subject_{i:03d}/session.npy" for i in range(200)], name="rec")
    assert infer_column(many).kind is ColumnKind.TIMESERIES  # unique long paths: neither text nor an identifier


# ---------------------------------------------------------------------------------------------------- loading
def test_load_formats(tmp_path):
    lim = LimitsConfig()
    np.save(tmp_path / "a.npy", np.arange(5, dtype=np.int16))
    assert load_series_file(tmp_path / "a.npy", lim).shape == (5, 1)
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [4.0, None, 6.0]}).to_parquet(tmp_path / "b.parquet")
    b = load_series_file(tmp_path / "b.parquet", lim)
    assert b.shape == (3, 2) and np.isnan(b[1, 1]) and b.dtype == np.float32
    (tmp_path / "c.csv").write_text("x,y\n1,2\n3,\n5,6\n")  # a header row and an empty cell (missing)
    c = load_series_file(tmp_path / "c.csv", lim)
    assert c.shape == (3, 2) and np.isnan(c[1, 1]) and c[2, 0] == 5
    (tmp_path / "d.csv").write_text("1,2\n3,4\n")  # no header
    assert load_series_file(tmp_path / "d.csv", lim).shape == (2, 2)
    assert load_inline("[[1, 2], [3, null]]", lim).shape == (2, 2)
    assert load_inline([1, 2, 3], lim).shape == (3, 1)


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: np.save(p / "s.npy", np.zeros((0, 2))), "empty"),
        (lambda p: (p / "s.csv").write_text(""), "empty"),
        (lambda p: (p / "s.csv").write_text("a,b\n"), "empty"),
        (lambda p: (p / "s.npy").write_bytes(b"\x93NUMPY\x01\x00garbage"), "not a readable .npy"),
        (lambda p: (p / "s.parquet").write_bytes(b"PAR1 not really"), "not a readable .parquet"),
        (lambda p: np.save(p / "s.npy", np.zeros((2, 2, 2))), "steps x channels"),
        (lambda p: np.save(p / "s.npy", np.array([{"a": 1}], dtype=object)), "pickled"),
        (lambda p: (p / "s.csv").write_text("1,2\n3,oops\n"), "not a number"),
    ],
)
def test_bad_series_files(tmp_path, write, message):
    write(tmp_path)
    (path,) = tmp_path.iterdir()
    with pytest.raises(LoadError, match=message):
        load_series_file(path, LimitsConfig())


def test_limits_are_checked_before_reading(tmp_path):
    # a truncated .npy whose header declares 10^9 steps: refused by the header, nothing allocated
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = (10**9,)
    with open(tmp_path / "big.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 16)
    with pytest.raises(LoadError, match=r"1,000,000,000 steps.*limits.max_series_steps"):
        load_series_file(tmp_path / "big.npy", LimitsConfig())
    np.save(tmp_path / "wide.npy", np.zeros((3, 20), np.float32))
    with pytest.raises(LoadError, match="20 channels.*limits.max_series_channels"):
        load_series_file(tmp_path / "wide.npy", LimitsConfig(max_series_channels=8))
    with pytest.raises(LoadError, match="limits.max_file_bytes"):
        load_series_file(tmp_path / "wide.npy", LimitsConfig(max_file_bytes=64))
    with pytest.raises(LoadError, match="empty"):
        load_inline("[]", LimitsConfig())


def test_nan_rule_forward_fill_and_missing_channel():
    x = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, np.nan], [4.0, 5.0]], np.float32)
    filled, missing = forward_fill(x)
    assert np.isnan(filled[0, 0]) and filled[2, 0] == 2.0 and filled[2, 1] == 1.0 and filled[3, 1] == 5.0
    assert missing.sum() == 4
    proc = TimeSeriesProcessor("s", ["s"], PolymodalConfig().processing)
    proc.set_state({"channels": 2, "length": 4, "mean": [0.0, 0.0], "std": [1.0, 1.0]}, {})
    z = proc._prepare(x)
    assert z.shape == (4, 3) and np.isfinite(z).all()
    assert z[0, 0] == 0.0  # a leading gap takes the training mean (0 after standardisation)
    assert z[:, 2].tolist() == [0.5, 0.5, 1.0, 0.0]  # the share of channels missing at each step


# ------------------------------------------------------------------------------------------------- processor
def _processors(folder: Path, config: dict | None = None):
    cfg = PolymodalConfig.from_any(config or {})
    frame = pd.read_csv(folder / "sensors.csv")
    schema = infer_schema(frame, "label")
    modalities, procs = build_processors(schema, cfg)
    ctx = LoadContext(folder, cfg.limits)
    for p in procs.values():
        p.fit(frame, ctx)
    return frame, modalities, procs, ctx


def test_processor_fit_state_round_trip(sensors):
    frame, _, procs, ctx = _processors(sensors)
    acc = procs["acc"]
    assert acc.channels == 2 and acc.in_channels == 3 and 40 <= acc.length <= 64
    assert procs["gyro"].channels == 1 and procs["trace"].channels == 1
    state = json.loads(json.dumps(acc.state()))  # JSON only, nothing pickled
    again = TimeSeriesProcessor("acc", ["acc"], acc.cfg)
    again.set_state(state, {})
    items = [acc.load(v, ctx) if isinstance(v, str) else None for v in frame["acc"][:6]]
    a, b = acc.collate(items, train=False), again.collate(items, train=False)
    assert torch.equal(a["acc"], b["acc"]) and torch.equal(a["acc.mask"], b["acc.mask"])
    x, mask = a["acc"], a["acc.mask"]
    assert x.shape == (6, 3, acc.length) and not mask[2].any(), "row 2 has no acc: absent, all masked"
    lengths = [len(it) for it in items if it is not None]
    assert sorted(mask.sum(1)[mask.any(1)].tolist()) == sorted(min(n, acc.length) for n in lengths)
    z = x[:, :2][mask.unsqueeze(1).expand(-1, 2, -1)]
    assert abs(float(z.mean())) < 0.5 and 0.5 < float(z.std()) < 1.5  # standardised with training statistics
    train = acc.collate(items, train=True)["acc"]  # augmentations change values, never the padding
    assert train.shape == x.shape and not torch.equal(train, x)
    assert (train[~mask.unsqueeze(1).expand_as(train)] == 0).all()


def test_resample_mode_gives_every_row_the_full_length(sensors):
    frame, _, procs, ctx = _processors(sensors, {"processing": {"series_fit": "resample", "series_length": 32}})
    acc = procs["acc"]
    out = acc.collate([acc.load(frame["acc"][0], ctx), None], train=False)
    assert out["acc"].shape == (2, 3, 32) and out["acc.mask"][0].all() and not out["acc.mask"][1].any()


def test_wrong_channel_count_is_a_row_problem(sensors, tmp_path):
    _, _, procs, ctx = _processors(sensors)
    np.save(sensors / "three.npy", np.zeros((50, 3), np.float32))
    with pytest.raises(LoadError, match=r"3 channel\(s\); the model was trained on 2"):
        procs["acc"].load("three.npy", ctx)


# -------------------------------------------------------------------------------------------------- encoders
def _batches(folder: Path):
    frame, modalities, procs, ctx = _processors(folder)
    prepared = prepare(frame, procs, ctx, progress=False)
    return frame, modalities, procs, prepared


@pytest.mark.parametrize("name", sorted(TS_SMALL_PARAMS))
def test_encoder_shapes_absent_rows_and_learning(sensors, name):
    """Each encoder returns pooled + tokens + masks, zero for absent rows, and learns the frequency task."""
    frame, modalities, procs, prepared = _batches(sensors)
    (m,) = [m for m in modalities if m.name == "acc"]
    torch.manual_seed(0)
    enc = build_encoder(name, TS_SMALL_PARAMS[name], m, procs[m.name])
    head = torch.nn.Linear(16, 2)
    y = torch.tensor((frame["label"] == "fast").astype(int).to_numpy())
    present = [i for i in range(len(frame)) if isinstance(frame["acc"][i], str)]
    collate = Collator(prepared, procs, True, torch.long)
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=5e-3)
    for step in range(60):
        rows = [present[(step * 16 + j) % len(present)] for j in range(16)]
        batch = collate(rows)
        loss = torch.nn.functional.cross_entropy(head(enc(batch.inputs, batch.masks["acc"]).pooled), y[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.eval()
    batch = Collator(prepared, procs, False, torch.long)(list(range(len(frame))))
    with torch.no_grad():
        out = enc(batch.inputs, batch.masks["acc"])
    assert out.pooled.shape == (len(frame), 16) and out.tokens is not None and out.tokens.shape[2] == 16
    assert out.token_mask is not None and out.token_mask.shape == out.tokens.shape[:2]
    assert out.tokens.shape[1] <= enc.config.max_tokens
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    absent = ~batch.masks["acc"]
    assert absent.sum() == 1 and (out.pooled[absent] == 0).all() and (out.tokens[absent] == 0).all()
    accuracy = float((head(out.pooled).argmax(1) == y)[~absent].float().mean())
    assert accuracy >= 0.8, f"{name} learned {accuracy:.2f} on a two-class sine-frequency task"


@pytest.mark.parametrize("name", FUSIONS.names())
def test_every_fusion_accepts_time_series(sensors, name):
    _, modalities, procs, prepared = _batches(sensors)
    cfg = PolymodalConfig.from_any(
        {
            "encoders": {"timeseries": {"name": "ts_cnn", "width": 8, "dim": 16, "stages": 2}},
            "fusion": {"name": name, "dim": 16},
        }
    )
    task = build_task("binary", cfg.task)
    task.fit_target(pd.Series(["fast", "slow"]))
    torch.manual_seed(0)
    model = build_model(cfg, modalities, procs, task)
    batch = Collator(prepared, procs, False, torch.long)(list(range(8)))
    none = {k: torch.zeros_like(v) for k, v in batch.masks.items()}
    model.eval()
    with torch.no_grad():
        out, empty = model(batch.inputs, batch.masks), model(batch.inputs, none)
    assert out.shape == (8, 2) and torch.isfinite(out).all() and torch.isfinite(empty).all()
    model.train()
    model.loss(model(batch.inputs, batch.masks), torch.tensor([0, 1] * 4), task).backward()
    for enc_name, enc in model.encoders.items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters()), enc_name


# --------------------------------------------------------------------------------------- end to end, corruptions
def test_fit_predict_save_load_and_modality_dropout(fitted_ts, sensors, tmp_path):
    test = sensors / "test" / "sensors.csv"
    metrics = fitted_ts.evaluate(test)
    assert metrics["accuracy"] >= 0.8, metrics
    run = fitted_ts.save(tmp_path / "run")
    back = Predictor.load(run, verbose=False)
    assert back.predict(test).tolist() == fitted_ts.predict(test).tolist()
    frame = pd.read_csv(test)
    frame["acc"] = None  # a whole modality missing at prediction time: the other sensors still answer
    without_acc = fitted_ts.predict(frame, data_root=sensors / "test")
    assert len(without_acc) == 24 and set(without_acc) <= {"fast", "slow"}


def test_robustness_sweep_runs_series_corruptions(fitted_ts, sensors, tmp_path):
    m = fitted_ts.evaluate(sensors / "test" / "sensors.csv", robustness=True, robustness_out=tmp_path / "rob")
    frame = m.pop("robustness").to_frame()
    for mod in ("acc", "gyro", "trace"):
        rows = frame[frame["modality"] == mod]
        assert set(rows["corruption"]) == {"missing", "series_noise", "dropped_steps", "dropped_channel"}
    noise = frame[(frame["modality"] == "acc") & (frame["corruption"] == "series_noise")]
    assert noise["accuracy"].between(0, 1).all() and len(noise) == len(CORRUPTIONS.build("series_noise").levels) + 1


# ------------------------------------------------------------------------------------------------- bad input
def test_cli_bad_series_exit_2_nothing_written(cli, sensors, fitted_ts, tmp_path):
    data = tmp_path / "data"
    make_sensor_table(data, 24, seed=5, missing=False)
    (data / "acc3.npy").write_bytes((data / "acc3.npy").read_bytes()[:90])  # truncated
    np.save(data / "acc4.npy", np.zeros((0, 2), np.float32))  # zero-length
    config = tmp_path / "config.json"
    config.write_text(json.dumps(SMALL))
    out = tmp_path / "out" / "run"
    r = cli("fit", data / "sensors.csv", "--label", "label", "--out", out, "--config", config, "--quiet")
    assert r.exit_code == 2, (r.stdout, r.stderr)
    msg = " ".join(r.stderr.split())
    assert "row 3, column 'acc': not a readable .npy file" in msg, msg
    assert "row 4, column 'acc': time series is empty" in msg, msg
    assert not out.exists() and not list(out.parent.glob(".run.*"))
    # wrong channel count vs training, at prediction time
    run = fitted_ts.save(tmp_path / "fitted")
    data2 = tmp_path / "data2"
    make_sensor_table(data2, 6, seed=6, missing=False)
    np.save(data2 / "acc1.npy", np.zeros((50, 3), np.float32))
    preds = tmp_path / "preds.csv"
    r = cli("predict", run, data2 / "sensors.csv", "--out", preds, "--quiet")
    assert r.exit_code == 2, (r.stdout, r.stderr)
    msg = " ".join(r.stderr.split())
    assert "row 1, column 'acc': time series has 3 channel(s); the model was trained on 2" in msg, msg
    assert not preds.exists() and not list(tmp_path.glob(".preds.csv.*"))


# --------------------------------------------------------------------------------- explanations, export, serve
@pytest.mark.parametrize("method", ["occlusion", "integrated_gradients"])
def test_explanations_over_channel_and_time(fitted_ts, sensors, method, tmp_path):
    from polymodal.explain.plots import plot_explanation

    (e, *_) = fitted_ts.explain(pd.read_csv(sensors / "test" / "sensors.csv").head(2), method, sensors / "test")
    acc = e.attributions["acc"]
    length = fitted_ts.pipeline.processors["acc"].length
    assert acc.kind == "timeseries" and acc.scores.shape == (2, length) and np.isfinite(acc.scores).all()
    assert np.abs(acc.scores).sum() > 0 and acc.background is not None and acc.background.shape == (2, length)
    assert abs(sum(e.shares.values()) - 1) < 1e-6
    assert json.loads(json.dumps(e.to_dict()))["columns"]["acc"]["shape"] == [2, length]
    plot_explanation(e).savefig(tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 0


def test_onnx_export_parity(fitted_ts, sensors, tmp_path):
    from polymodal.export.export import export_run

    run = fitted_ts.save(tmp_path / "run")
    result = export_run(run, tmp_path / "onnx", data=sensors / "test" / "sensors.csv", data_root=sensors / "test")
    (parity,) = result.parity.values()
    assert parity.rows > 0 and parity.max_abs_diff < 1e-3 and parity.agreement == 1.0


def test_serve_takes_inline_arrays(fitted_ts, sensors):
    from fastapi.testclient import TestClient

    from polymodal.serving.app import create_app
    from polymodal.serving.schemas import ServeConfig

    folder = sensors / "test"
    frame = pd.read_csv(folder / "sensors.csv").head(4)
    rows = [
        {
            "acc": np.load(folder / r.acc).tolist(),
            "gyro": pd.read_csv(folder / r.gyro).iloc[:, 0].tolist(),
            "trace": r.trace,  # a JSON string is accepted too
        }
        for r in frame.itertuples()
    ]
    rows[1]["acc"] = None
    frame.loc[1, "acc"] = None
    with TestClient(create_app(fitted_ts, ServeConfig(max_wait_ms=2))) as client:
        r = client.post("/predict", json={"rows": rows})
        assert r.status_code == 200, r.text
        expected = fitted_ts.predict(frame, data_root=folder).tolist()
        assert [p["prediction"] for p in r.json()["predictions"]] == expected
        bad = client.post("/predict", json={"rows": [dict(rows[0], acc=[[1.0, 2.0, 3.0]] * 10)]})
        assert bad.status_code == 422 and "row 0, column 'acc': time series has 3 channel(s)" in bad.text


def test_report_explains_time_series(fitted_ts, sensors, tmp_path):
    from polymodal.reporting import report

    run = fitted_ts.save(tmp_path / "run")
    out = report(run, sensors / "test" / "sensors.csv", tmp_path / "r.html", n_examples=2, n_bootstrap=20)
    html = out.read_text(encoding="utf-8")
    start = html.index('<section id="gallery"')
    gallery = html[start : html.index("</section>", start)]
    assert "<img" in gallery and "time-series channel x time maps" in gallery and "acc " in gallery


def test_long_inline_series_are_recognised_from_their_first_characters():
    long = [json.dumps(np.round(np.sin(np.arange(30_000) / (i + 1)), 3).tolist()) for i in range(25)]
    assert len(long[0]) > 100_000
    spec = infer_column(pd.Series(long, name="x"))
    assert spec.kind is ColumnKind.TIMESERIES, spec


@pytest.mark.parametrize(
    "cell, message",
    [
        ("[[1, 2], [3]]", "not a rectangular array"),
        ('[1, "a"]', "not numbers"),
        ("[[[1]]]", "3 dimensions"),
        ("[1, 2", "not valid JSON"),
        ("[" + "9" * 400 + "]", "not a rectangular array"),  # beyond any float: refused, never a crash
        ("[]", "empty"),
        ("[[]]", "empty"),
    ],
)
def test_hostile_inline_cells_are_load_errors(cell, message):
    with pytest.raises(LoadError, match=message):
        load_inline(cell, LimitsConfig())


def test_inline_missing_values_and_infinities_are_nan():
    arr = load_inline("[[1, null], [1e400, 2]]", LimitsConfig())
    assert arr.shape == (2, 2) and np.isnan(arr[0, 1]) and np.isnan(arr[1, 0]) and arr[1, 1] == 2
