"""Robustness sweeps: corruptions, MultiBench's relative/effective robustness, the report, the API and the CLI."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest

import polymodal.evaluation.corruptions as cr
import polymodal.evaluation.robustness as rb
from polymodal.data.dataset import prepare
from polymodal.data.processors import LoadContext
from polymodal.errors import ConfigError, PolymodalError
from polymodal.evaluation.corruptions import CORRUPTIONS, CorruptionError, corrupt_items
from polymodal.evaluation.robustness import (
    Curve,
    RobustnessReport,
    effective_robustness,
    plan_sweep,
    relative_robustness,
    robustness_sweep,
)

PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------ corruptions
def _sample(name: str):
    """A decoded item of the kind ``name`` applies to, and how far a corrupted copy is from it."""
    rng = np.random.default_rng(123)
    if name in ("gaussian_noise", "occlusion"):
        image = rng.integers(20, 236, (3, 24, 32)).astype(np.uint8)
        return image, lambda a, b: float(np.abs(a.astype(float) - b.astype(float)).mean())
    if name == "frame_drop":  # a video [T, C, H, W] whose frames all differ: distance = frames replaced
        video = np.arange(64, dtype=np.uint8)[:, None, None, None].repeat(3, 1).repeat(4, 2).repeat(4, 3)
        return video, lambda a, b: float((a[:, 0, 0, 0] != b[:, 0, 0, 0]).sum())
    if name == "white_noise":
        wave = np.sin(np.linspace(0, 60, 4000)).astype(np.float32)
        return wave, lambda a, b: float(np.mean((a - b) ** 2))
    if name in ("token_dropout", "token_swap"):
        ids = np.arange(2, 102, dtype=np.int64)  # distinct tokens: every move is visible
        if name == "token_dropout":
            return ids, lambda a, b: float(len(a) - len(b))
        return ids, lambda a, b: float((a != b).sum())
    if name in ("series_noise", "dropped_steps", "dropped_channel"):  # a series [steps, channels]
        series = np.sin(np.linspace(0, 30, 400))[:, None] * np.arange(1, 9)[None, :]
        return series.astype(np.float32), lambda a, b: float(np.abs(np.nan_to_num(a) - np.nan_to_num(b)).mean())
    num = np.column_stack([rng.standard_normal(40), np.zeros(40)]).astype(np.float32)
    num[3] = (0.0, 1.0)  # a missing cell
    return (num, np.array([2, 3], np.int64)), lambda a, b: float(np.abs(a[0][:, 0] - b[0][:, 0]).mean())


def _same(a, b) -> bool:
    """Items are arrays, or tuples of arrays (tabular)."""

    def parts(x):
        return (x,) if isinstance(x, np.ndarray) else tuple(x)

    return all(np.array_equal(x, y, equal_nan=x.dtype.kind == "f") for x, y in zip(parts(a), parts(b)))


@pytest.mark.parametrize("name", CORRUPTIONS.names())
def test_corruption_is_deterministic_pure_and_worse_at_higher_levels(name):
    c = CORRUPTIONS.build(name)
    item, distance = _sample(name)
    before = copy.deepcopy(item)
    levels = c.check_levels(None)
    assert len(levels) >= 5
    out = [c.apply(item, level, np.random.default_rng(7)) for level in levels]
    again = [c.apply(item, level, np.random.default_rng(7)) for level in levels]
    assert all(_same(a, b) for a, b in zip(out, again)), "same seed, same corruption"
    first_other_seed = c.apply(item, levels[0], np.random.default_rng(8))
    assert distance(item, first_other_seed) > 0
    dist = [distance(item, o) for o in out]
    assert all(d > 0 for d in dist) and all(b > a for a, b in zip(dist, dist[1:])), dist
    # the input is untouched and the output keeps its type
    assert _same(item, before)
    if isinstance(item, np.ndarray):
        assert all(o.dtype == item.dtype for o in out)


def test_corruption_details():
    image = np.full((1, 10, 10), 200, np.uint8)
    assert (cr.occlude(image, 0.25, np.random.default_rng(0)) == 0).sum() == 25
    assert (cr.occlude(image, 1.0, np.random.default_rng(0)) == 0).all()
    assert len(cr.drop_tokens(np.arange(2, 12), 1.0, np.random.default_rng(0))) == 1  # never empty: [UNK]
    assert (cr.swap_tokens(np.arange(2, 12), 1.0, np.random.default_rng(0)) != np.arange(2, 12)).all()
    assert np.array_equal(cr.add_white_noise(np.zeros(50, np.float32), -5, np.random.default_rng(0)), np.zeros(50))
    num = np.array([[0.5, 0.0], [0.0, 1.0]], np.float32)
    noisy, _ = cr.add_numeric_noise((num, np.zeros(0, np.int64)), 2.0, np.random.default_rng(0))
    assert noisy[0, 0] != 0.5 and tuple(noisy[1]) == (0.0, 1.0), "missing cells stay missing"
    wave = np.sin(np.linspace(0, 60, 20_000)).astype(np.float32)
    noise = cr.add_white_noise(wave, 10.0, np.random.default_rng(0)) - wave
    assert 10 * np.log10(np.mean(wave**2) / np.mean(noise**2)) == pytest.approx(10.0, abs=0.2)


def test_corrupt_items_copies_and_keeps_absent_items():
    items = [np.arange(2, 30), None, np.arange(2, 30)]
    snapshot = copy.deepcopy(items)
    c = CORRUPTIONS.build("token_swap")
    out = corrupt_items(items, c, 0.5, seed=0, modality="text", rows=[0, 1, 2])
    assert out[1] is None and out is not items
    assert all(o is not i for o, i in zip(out, items) if i is not None)
    assert all((a is None and b is None) or np.array_equal(a, b) for a, b in zip(items, snapshot))
    assert not np.array_equal(out[0], out[2]), "each row draws its own noise"
    again = corrupt_items(items, c, 0.5, seed=0, modality="text", rows=[0, 1, 2])
    assert np.array_equal(out[0], again[0]) and np.array_equal(out[2], again[2])


@pytest.mark.parametrize(
    "name, levels, message",
    [
        ("occlusion", [0.2, 1.5], "between 0 and 1; got 1.5"),
        ("occlusion", [0.5, 0.2], "strictly increasing"),
        ("gaussian_noise", [0.0, 0.1], "more severe than the clean level 0"),
        ("white_noise", [0, 10], "strictly decreasing"),
        ("token_dropout", [], "at least one level"),
        ("numeric_noise", [float("nan")], "got nan"),
    ],
)
def test_bad_levels_are_rejected(name, levels, message):
    with pytest.raises(CorruptionError, match=message):
        CORRUPTIONS.build(name).check_levels(levels)


# ------------------------------------------------------------------------------------------ robustness metrics
def test_relative_and_effective_robustness_by_hand():
    curve = [0.9, 0.8, 0.6]
    assert relative_robustness(curve) == pytest.approx((0.9 + 0.8) / 2 * 0.5 + (0.8 + 0.6) / 2 * 0.5)  # 0.775
    assert effective_robustness(curve) == pytest.approx((0.8 - 0.9) + (0.6 - 0.9))  # flat baseline: -0.4
    # MultiBench: beta = lf + (f0 - lf0) = [0.9, 0.85, 0.7]; sum(f - beta) = 0 - 0.05 - 0.1
    assert effective_robustness(curve, [0.7, 0.65, 0.5]) == pytest.approx(-0.15)
    assert effective_robustness(curve, curve) == 0.0
    # With MultiBench's 11 levels our area is exactly its relative_robustness_helper
    eleven = list(np.linspace(0.9, 0.4, 11) ** 2)
    multibench = sum((eleven[i] + eleven[i + 1]) * 0.1 / 2 for i in range(10))
    assert relative_robustness(eleven) == pytest.approx(multibench)
    with pytest.raises(CorruptionError):
        effective_robustness(curve, [0.5, 0.4])
    with pytest.raises(CorruptionError):
        relative_robustness([0.5])


def _hand_report() -> RobustnessReport:
    clean = {"accuracy": 0.9, "f1_macro": 0.8}
    curves = [
        Curve(
            "audio",
            "audio",
            "white_noise",
            "dB",
            [math.inf, 10.0, 0.0],
            [clean, {"accuracy": 0.7, "f1_macro": 0.6}, {"accuracy": 0.5, "f1_macro": 0.4}],
            0.7,
            -0.6,
        )
    ]
    return RobustnessReport(
        "accuracy",
        True,
        10,
        0,
        "flat",
        clean,
        {"audio": "audio", "tabular": "tabular"},
        {"audio": {"accuracy": 0.6, "f1_macro": 0.5}, "tabular": {"accuracy": 0.4, "f1_macro": 0.3}},
        curves,
    )


def test_report_frames_and_json_round_trip(tmp_path):
    r = _hand_report()
    f = r.to_frame()
    assert list(f.columns[:7]) == ["modality", "kind", "corruption", "severity", "level", "unit", "accuracy"]
    assert list(zip(f["modality"], f["corruption"])) == [("audio", "white_noise")] * 3 + [
        ("audio", "missing"),
        ("tabular", "missing"),
    ]
    assert f["severity"].tolist()[:3] == [0, 1, 2] and f["severity"].isna().tolist()[3:] == [True, True]
    assert f["accuracy"].tolist() == [0.9, 0.7, 0.5, 0.6, 0.4]
    s = r.summary_frame()
    assert s["corruption"].tolist() == ["white_noise", "(missing only)"] and s["most_severe"][0] == 0.5
    back = RobustnessReport.from_dict(json.loads(json.dumps(r.to_dict(), allow_nan=False)))
    pd.testing.assert_frame_equal(back.to_frame(), f)
    assert back.curves[0].levels[0] == math.inf


def test_write_is_atomic_and_leaves_other_files(tmp_path, monkeypatch):
    r = _hand_report()
    out = tmp_path / "new"
    paths = r.write(out)
    assert {p.name for p in paths} == {
        "robustness.csv",
        "robustness.json",
        "robustness.md",
        "robustness_audio.png",
        "robustness_tabular.png",
    }
    assert all(p.is_file() for p in paths) and (out / "robustness_audio.png").read_bytes()[:8] == PNG
    (out / "mine.txt").write_text("keep me")
    r.write(out)
    assert (out / "mine.txt").read_text() == "keep me"

    def broken(self, modality):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(RobustnessReport, "plot", broken)
    with pytest.raises(RuntimeError):
        r.write(tmp_path / "never")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"], "nothing half-written"


# ---------------------------------------------------------------------------------------------- sweep and API
def test_sweep_leaves_items_alone_and_missing_clears_the_mask(fitted, test_csv, monkeypatch):
    frame = pd.read_csv(test_csv)
    prepared = prepare(
        frame, fitted.processors, LoadContext(test_csv.parent, fitted.config.limits), "missing", progress=False
    )
    snapshot = copy.deepcopy(prepared.items)
    masks = []
    real = rb.predict_outputs

    def spy(model, loader):
        masks.append({m: np.concatenate([b.masks[m].numpy() for b in loader]) for m in fitted.processors})
        return real(model, loader)

    monkeypatch.setattr(rb, "predict_outputs", spy)
    y = frame["label"].iloc[prepared.rows].reset_index(drop=True)
    report = robustness_sweep(
        fitted.model, fitted.processors, fitted.task, prepared, y, corruptions={"occlusion": [0.3, 0.6]}
    )
    mods = list(fitted.processors)
    assert len(masks) == 1 + len(mods) + 2  # clean, each modality missing, two occlusion levels
    clean_mask = masks[0]
    assert clean_mask["image"].sum() > 0
    for i, m in enumerate(mods, start=1):
        assert not masks[i][m].any(), f"{m} missing: mask all False"
        assert all(np.array_equal(masks[i][o], clean_mask[o]) for o in mods if o != m)
    assert all(np.array_equal(masks[-1][m], clean_mask[m]) for m in mods), "corruption keeps presence"
    for m, items in prepared.items.items():
        for a, b in zip(items, snapshot[m]):
            assert (a is None) == (b is None) and (a is None or _same(a, b))
    assert [c.corruption for c in report.curves] == ["occlusion"] and report.curves[0].levels == [0.0, 0.3, 0.6]


def test_evaluate_with_robustness(fitted, test_csv, tmp_path):
    plain = fitted.evaluate(test_csv)
    m = fitted.evaluate(test_csv, robustness=True, robustness_out=tmp_path / "rob")
    report = m.pop("robustness")
    assert m == plain, "the flat metrics are unchanged"
    assert isinstance(report, RobustnessReport) and report.metric == "accuracy" and report.higher_is_better
    f = report.to_frame()
    expected = {
        "image": ["gaussian_noise", "occlusion"],
        "audio": ["white_noise"],
        "text": ["token_dropout", "token_swap"],
        "tabular": ["numeric_noise"],
    }
    for mod, names in expected.items():
        rows = f[f["modality"] == mod]
        assert (rows["corruption"] == "missing").sum() == 1
        for n in names:
            curve = rows[rows["corruption"] == n]
            levels = CORRUPTIONS.build(n).levels
            assert curve["severity"].tolist() == list(range(len(levels) + 1))
            assert curve["level"].tolist()[1:] == list(levels)
            assert curve["accuracy"].iloc[0] == plain["accuracy"]
            assert curve["relative_robustness"].nunique() == 1
    assert len(f) == sum(len(v) * 6 + 1 for v in expected.values())
    assert f["accuracy"].between(0, 1).all()
    written = {p.name for p in (tmp_path / "rob").iterdir()}
    assert written == {"robustness.csv", "robustness.json", "robustness.md"} | {
        f"robustness_{mod}.png" for mod in expected
    }


def test_evaluate_rejects_bad_robustness_options(fitted, test_csv):
    with pytest.raises(ConfigError, match="need robustness=True"):
        fitted.evaluate(test_csv, corruptions=["occlusion"])
    with pytest.raises(ConfigError, match="unknown corruption 'blur'; choose one of: .*gaussian_noise"):
        fitted.evaluate(test_csv, robustness=True, corruptions=["blur"])
    with pytest.raises(CorruptionError, match="strictly increasing"):
        fitted.evaluate(test_csv, robustness=True, corruptions={"occlusion": [0.5, 0.1]})
    with pytest.raises(CorruptionError, match="applies to audio modalities"):
        plan_sweep({"text": fitted.processors["text"]}, ["white_noise"])
    assert isinstance(CorruptionError("x"), PolymodalError)


# ---------------------------------------------------------------------------------------------------------- CLI
def test_cli_evaluate_robustness_writes_everything(cli, run_dir, test_csv, tmp_path):
    out = tmp_path / "rob"
    r = cli("evaluate", run_dir, test_csv, "--robustness", "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "robustness: accuracy" in text and "white_noise" in text and "token_dropout" in text
    assert {"robustness.csv", "robustness.json", "robustness.md"} <= {p.name for p in out.iterdir()}
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["robustness_audio.png", "robustness_image.png", "robustness_tabular.png", "robustness_text.png"]
    assert all((out / p).read_bytes()[:8] == PNG for p in pngs)
    table = pd.read_csv(out / "robustness.csv")
    assert len(table) == 6 * 6 + 4 and (table["corruption"] == "missing").sum() == 4
    assert "| image | occlusion |" in (out / "robustness.md").read_text()

    # the same model as its own baseline: effective robustness 0 everywhere; JSON output carries the report
    r = cli(
        "evaluate",
        run_dir,
        test_csv,
        "--robustness",
        "--corruption",
        "occlusion",
        "--baseline",
        out / "robustness.json",
        "--json",
        "--quiet",
    )
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert "accuracy" in data and [c["corruption"] for c in data["robustness"]["curves"]] == ["occlusion"]
    assert data["robustness"]["curves"][0]["effective_robustness"] == 0.0

    r = cli(
        "evaluate",
        run_dir,
        test_csv,
        "--robustness",
        "--corruption",
        "occlusion=0.2,0.4",
        "--baseline",
        out / "robustness.json",
        "--quiet",
    )
    assert r.exit_code == 2 and "use the same levels" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--robustness", "--corruption", "blur"], "unknown corruption 'blur'"),
        (["--robustness", "--corruption", "occlusion=0.5,0.2"], "strictly increasing"),
        (["--robustness", "--corruption", "occlusion=0.1,x"], "comma-separated numbers"),
        (["--robustness", "--corruption", "white_noise=5", "--corruption", "white_noise"], "given twice"),
        (["--corruption", "occlusion"], "need --robustness"),
        (["--robustness", "--baseline", "no-such-robustness.json"], "cannot read the robustness report"),
    ],
)
def test_cli_bad_robustness_input_exits_2(cli, run_dir, test_csv, args, message):
    r = cli("evaluate", run_dir, test_csv, *args, "--quiet")
    assert r.exit_code == 2 and message in " ".join(r.stderr.split()), r.stderr
    assert "Traceback" not in r.stderr
