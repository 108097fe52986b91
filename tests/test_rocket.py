"""The ROCKET member (random convolutional kernels + ridge) for time-series columns: it learns, round-trips through
spec + safetensors, is deterministic from its seed, exports to ONNX, and the default fit of a time-series table
considers it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_members import prepared

from polymodal.config import TaskConfig
from polymodal.members import MEMBERS, RocketMember
from polymodal.members.rocket import KernelBank
from polymodal.schema import Modality
from polymodal.tasks import build_task


def shapes_table(n: int, seed: int = 0, steps: int = 60) -> pd.DataFrame:
    """Inline 2-channel series: a bump (class "bump") or a dip ("dip") at a random place, in noise; 3 classes when
    a flat row is added every third row. Lengths vary (a crop of 48-60 steps)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ("bump", "dip", "flat")[i % 3]
        t = int(rng.integers(48, steps + 1))
        x = 0.3 * rng.standard_normal((t, 2))
        at = int(rng.integers(5, t - 10))
        sign = {"bump": 1.0, "dip": -1.0, "flat": 0.0}[label]
        x[at : at + 6, 0] += 2.0 * sign
        rows.append({"s": json.dumps(x.round(3).tolist()), "y": label})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table():
    return prepared(shapes_table(60))


def _outputs(member: torch.nn.Module, batch) -> np.ndarray:
    with torch.no_grad():
        return member(batch.inputs, batch.masks).numpy()


def test_rocket_learns_a_shape_and_reports_its_column(table):
    member = RocketMember.fit(table.train, table.val, table.modalities, table.processors, table.task, seed=0)
    out = _outputs(member, table.batch())
    assert out.shape == (len(table.val), 3) and np.isfinite(out).all()
    assert (out.argmax(1) == table.val.targets).mean() >= 0.8
    assert member.feature_importance() == {"s": 1.0}
    assert member.info["kernels_per_column"] == 10_000 and member.info["temperature"] > 0


def test_rocket_is_deterministic_and_round_trips_through_spec_and_tensors(table, tmp_path):
    a = RocketMember.fit(table.train, table.val, table.modalities, table.processors, table.task, seed=5)
    b = RocketMember.fit(table.train, table.val, table.modalities, table.processors, table.task, seed=5)
    c = RocketMember.fit(table.train, table.val, table.modalities, table.processors, table.task, seed=6)
    batch = table.batch()
    np.testing.assert_array_equal(_outputs(a, batch), _outputs(b, batch))
    assert not np.array_equal(_outputs(a, batch), _outputs(c, batch))  # the seed draws the kernels
    spec = json.loads(json.dumps(a.spec()))  # JSON only: sizes and groups, no arrays
    save_file(a.state_dict(), tmp_path / "member.safetensors")
    rebuilt = MEMBERS.get("rocket").from_spec(spec, table.modalities, table.processors, table.task)
    rebuilt.load_state_dict(load_file(tmp_path / "member.safetensors"))
    np.testing.assert_array_equal(_outputs(a, batch), _outputs(rebuilt, batch))
    assert rebuilt.feature_importance() == a.feature_importance()


def test_rocket_features_read_observed_steps_only_and_absent_cells_are_zero():
    bank = KernelBank.random("s", 1, 40, 50, np.random.default_rng(0))
    x = torch.randn(2, 2, 40)
    steps = torch.ones(2, 40, dtype=torch.bool)
    steps[1, 30:] = False
    padded = x.clone()
    padded[1, :, 30:] = 7.0  # whatever lies past a row's end must not change its features
    masks = {"s": torch.tensor([True, True])}
    a = bank({"s": x, "s.mask": steps}, masks)
    b = bank({"s": padded, "s.mask": steps}, masks)
    torch.testing.assert_close(a, b)
    absent = bank({"s": x, "s.mask": steps}, {"s": torch.tensor([False, True])})
    assert (absent[0] == 0).all() and (absent[1] == a[1]).all()


def test_rocket_exports_to_onnx_and_matches_eager(table):
    from polymodal.export.onnx_graph import session, to_onnx

    member = RocketMember.fit(table.train, table.val, table.modalities, table.processors, table.task, seed=0)
    graph, signature = to_onnx(member, table.processors)
    sess = session(graph)
    names = {i.name for i in sess.get_inputs()}
    batch = table.batch()
    batch.masks["s"][::3] = False
    got = sess.run([signature.output], {k: v for k, v in signature.feed(batch).items() if k in names})[0]
    np.testing.assert_allclose(got, _outputs(member, batch), atol=1e-4)


def test_rocket_applies_to_time_series_only_and_learns_regression():
    binary = build_task("binary", TaskConfig())
    series, tab = Modality("s", "timeseries", ["s"]), Modality("tabular", "tabular", ["x"])
    assert RocketMember.applies([series, tab], binary) and not RocketMember.applies([tab], binary)
    frame = shapes_table(45, seed=1)
    frame["y"] = [float(np.abs(np.array(json.loads(s))[:, 0]).max()) for s in frame["s"]]
    reg = prepared(frame)
    member = RocketMember.fit(reg.train, reg.val, reg.modalities, reg.processors, reg.task, seed=0)
    out = _outputs(member, reg.batch())[:, 0]
    assert np.corrcoef(out, reg.val.targets)[0, 1] > 0.5


def test_default_fit_of_a_time_series_table_considers_rocket(tmp_path):
    from polymodal import Predictor
    from polymodal.ensemble import is_ensemble

    train, test = shapes_table(60, seed=2), shapes_table(30, seed=3)
    config = {
        "training": {"max_epochs": 2},
        "encoders": {"timeseries": {"name": "ts_cnn", "width": 8, "dim": 16, "stages": 2}},
        "fusion": {"dim": 16},
    }
    p = Predictor("y", config=config, verbose=False, seed=0).fit(train)
    members = {m["member"]: m for m in p.fit_summary()["members"]}
    assert {"fused_concat", "rocket"} <= set(members) and members["rocket"]["status"] == "ok"
    # two epochs of a small network against ROCKET: the kernels win on validation, so the model is an ensemble
    assert is_ensemble(p.model) and members["rocket"]["weight"] > 0
    assert p.evaluate(test)["accuracy"] >= 0.8
    run = p.save(tmp_path / "run")
    again = Predictor.load(run, verbose=False)
    np.testing.assert_array_equal(again.predict_proba(test).to_numpy(), p.predict_proba(test).to_numpy())
    # the ensemble with the ROCKET member exports to ONNX like any run (what `polymodal serve --onnx` runs)
    from polymodal.export.export import export_run

    test.to_csv(tmp_path / "test.csv", index=False)
    (parity,) = export_run(run, tmp_path / "onnx", data=tmp_path / "test.csv").parity.values()
    assert parity.rows == len(test) and parity.max_abs_diff < 1e-3 and parity.agreement == 1.0
