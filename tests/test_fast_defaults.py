"""Faster defaults (issue 20): the batched random shift, the automatic precision and the channels-last layout."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import tiny_config

from polymodal import Predictor
from polymodal.config import TrainingConfig
from polymodal.data.processors import _random_shift
from polymodal.training import speed


def _shift_by_slicing(x: torch.Tensor, pad: int) -> torch.Tensor:
    """The per-image loop the batched shift replaced (same random draws, same order)."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (b,)).tolist()
    dy = torch.randint(0, 2 * pad + 1, (b,)).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


@pytest.mark.parametrize("channels", [1, 3])
def test_batched_random_shift_equals_shifting_each_image(channels):
    x = torch.rand(17, channels, 12, 10)
    torch.manual_seed(5)
    expected = _shift_by_slicing(x, 2)
    torch.manual_seed(5)
    got = _random_shift(x, 2)
    assert got.shape == x.shape and got.is_contiguous()
    assert torch.equal(got, expected)
    assert not torch.equal(got, x)  # it does shift


BIG = speed.BF16_MIN_ROWS


@pytest.mark.parametrize(
    ("precision", "accelerator", "cuda", "bf16", "env", "rows", "expected"),
    [
        ("32-true", "auto", False, True, "1", BIG, "32-true"),  # an explicit choice always wins
        (None, "auto", True, True, "1", BIG, "16-mixed"),
        (None, "auto", False, True, None, BIG - 1, "32-true"),  # small tables: float32 on a CPU
        (None, "auto", False, True, None, None, "32-true"),  # (rows unknown: as small)
        (None, "auto", False, True, None, BIG, "bf16-mixed"),  # large tables: bf16 where it is native
        (None, "auto", False, True, "0", BIG, "32-true"),  # the variable turns it off ...
        (None, "auto", False, True, "1", 10, "bf16-mixed"),  # ... or on for every table
        (None, "cpu", True, True, "1", None, "bf16-mixed"),
        (None, "auto", False, False, "1", BIG, "32-true"),  # emulated bfloat16 is slower: never chosen
        (None, "auto", False, False, None, BIG, "32-true"),
        (None, "mps", False, True, "1", BIG, "32-true"),
    ],
)
def test_automatic_precision(monkeypatch, precision, accelerator, cuda, bf16, env, rows, expected):
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: bf16)
    if env is None:
        monkeypatch.delenv(speed.BF16_ENV, raising=False)
    else:
        monkeypatch.setenv(speed.BF16_ENV, env)
    cfg = TrainingConfig(precision=precision, accelerator=accelerator)
    assert speed.auto_precision(cfg, cuda=cuda, rows=rows) == expected


def test_channels_last_inside_contiguous_after():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 8, 8))
    with speed.channels_last(model):
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert not model[0].weight.is_contiguous()
    assert all(p.is_contiguous() for p in model.parameters())


def test_bf16_fit_keeps_float32_contiguous_weights_and_reloads_identically(tiny_data, tmp_path, monkeypatch):
    # bf16-mixed forced (this CPU may lack native bfloat16): the saved network is float32 and contiguous, and the
    # loaded run predicts exactly what the fitted one does
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: True)
    p = Predictor("label", config=tiny_config(max_epochs=1), verbose=False, seed=0, preset="fast").fit(tiny_data)
    params = list(p.model.parameters())
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in params)
    run = p.save(tmp_path / "run")
    frame = pd.read_csv(tiny_data)
    again = Predictor.load(run)
    assert (
        again.predict_proba(frame, data_root=tiny_data.parent).to_numpy()
        == p.predict_proba(frame, data_root=tiny_data.parent).to_numpy()
    ).all()


@pytest.mark.parametrize(
    ("rows", "epochs"),
    [(500, 30), (3_000, 30), (5_000, 19), (17_000, 12), (100_000, 10)],
)
def test_automatic_epochs_aim_at_a_step_budget_within_10_to_30(rows, epochs):
    from polymodal.fitting import AUTO_EPOCH_STEPS, auto_batch_size, auto_epochs, auto_patience

    bs = auto_batch_size(rows)
    got = auto_epochs(rows, bs)
    assert got == epochs
    steps = -(-rows // bs)
    assert got in (10, 30) or (got - 1) * steps < AUTO_EPOCH_STEPS <= got * steps
    assert auto_patience(got) == 4  # large tables: the schedule they always had


@pytest.mark.parametrize(
    # rows -> (batch size, epochs, patience): the UCR training splits (ArrowHead 30, GunPoint 43, ItalyPowerDemand
    # 57 after the validation split), and where the floor of steps ends (~400 rows at batch 32)
    ("rows", "batch", "epochs", "patience"),
    [(30, 16, 200, 27), (43, 16, 134, 18), (57, 16, 100, 14), (127, 16, 50, 7), (128, 32, 100, 14), (300, 32, 40, 6)],
)
def test_tiny_tables_get_small_batches_a_floor_of_steps_and_a_scaled_patience(rows, batch, epochs, patience):
    from polymodal.config import TrainingConfig
    from polymodal.fitting import AUTO_MAX_EPOCHS, AUTO_MIN_STEPS, resolve_training

    training = TrainingConfig()
    resolve_training(training, rows)
    assert (training.batch_size, training.max_epochs, training.patience) == (batch, epochs, patience)
    steps = -(-rows // batch)
    assert training.max_epochs * steps >= AUTO_MIN_STEPS or training.max_epochs == AUTO_MAX_EPOCHS
    # what the user sets is kept: epochs given, patience from them; patience given, as given
    given = TrainingConfig(max_epochs=12, patience=2)
    resolve_training(given, rows)
    assert (given.max_epochs, given.patience) == (12, 2)
    resolve_training(short := TrainingConfig(max_epochs=12), rows)
    assert short.patience == 4


@pytest.mark.parametrize(("env", "expected"), [("0", "32-true"), ("1", "bf16-mixed")])
def test_fit_records_the_precision_it_trained_with(monkeypatch, train_csv, env, expected):
    from conftest import tiny_config

    from polymodal import Predictor

    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: True)  # (bf16 also runs, emulated, without it)
    monkeypatch.setenv(speed.BF16_ENV, env)
    p = Predictor("label", config=tiny_config(max_epochs=1), verbose=False, seed=0).fit(train_csv)
    assert p.fit_result is not None and p.fit_result.precision == expected
