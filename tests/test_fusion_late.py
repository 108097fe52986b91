"""Decision-level (late) fusion: a head per modality, combined by a learned weighted average or by voting."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import tiny_config

from polymodal import Predictor
from polymodal.config import TaskConfig
from polymodal.encoders import Encoded
from polymodal.errors import ConfigError
from polymodal.fusion import FusionInput, build_fusion
from polymodal.registry import FUSIONS
from polymodal.tasks import build_task

MODS = [FusionInput("a", 6), FusionInput("b", 5), FusionInput("c", 7)]
B, DIM, K = 5, 12, 3
# row 0: all present; row 1: "a" missing; row 2: only "c"; row 3: none; row 4: only "a"
MASKS = {
    "a": [True, False, False, False, True],
    "b": [True, True, False, False, False],
    "c": [True, True, True, False, False],
}


def task_of(problem: str):
    task = build_task(problem, TaskConfig())
    task.fit_target(pd.Series(["x", "y", "z"] if problem == "multiclass" else [0.5, 1.0, 3.0]))
    return task


def make_encoded(seed: int = 0, grad: bool = False) -> dict[str, Encoded]:
    g = torch.Generator().manual_seed(seed)
    return {
        f.name: Encoded(torch.randn(B, f.dim, generator=g).requires_grad_(grad), None, torch.tensor(MASKS[f.name]))
        for f in MODS
    }


def build(combine: str = "weighted", problem: str = "multiclass"):
    torch.manual_seed(0)
    return build_fusion("late", MODS, DIM, 0.0, {"combine": combine}, task_of(problem)).eval()


def head_probs(fusion, enc) -> dict[str, torch.Tensor]:
    return {f.name: fusion.heads[f.name](enc[f.name].pooled).softmax(-1) for f in MODS}


def test_registered_and_documented():
    assert "late" in FUSIONS and FUSIONS.get("late").decides
    assert "head per modality" in FUSIONS.get("late").__doc__


def test_needs_the_task():
    with pytest.raises(ConfigError, match="decision-level"):
        build_fusion("late", MODS, DIM, 0.0, {})


def test_weighted_is_a_probability_average_over_present_modalities():
    fusion = build("weighted")
    with torch.no_grad():
        fusion.logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
        enc = make_encoded()
        out = fusion(enc)
        probs = head_probs(fusion, enc)
    assert out.shape == (B, K)
    p = out.softmax(-1)
    w = torch.tensor([0.0, 1.0, -1.0]).exp()
    expected0 = (w[0] * probs["a"][0] + w[1] * probs["b"][0] + w[2] * probs["c"][0]) / w.sum()
    assert torch.allclose(p[0], expected0, atol=1e-5)
    assert torch.allclose(p[2], probs["c"][2], atol=1e-5)  # a single present modality decides alone
    assert torch.allclose(p[4], probs["a"][4], atol=1e-5)
    assert torch.allclose(p[3], fusion.empty.softmax(-1), atol=1e-6)  # nothing present: the learned prior


def test_vote_is_a_majority_of_present_heads():
    fusion = build("vote")
    with torch.no_grad():
        enc = make_encoded(seed=3)
        out = fusion(enc)
        probs = head_probs(fusion, enc)
    votes = {m: p.argmax(-1) for m, p in probs.items()}
    for row in (0, 1, 2, 4):
        present = [m for m in MASKS if MASKS[m][row]]
        counts = torch.bincount(torch.stack([votes[m][row] for m in present]), minlength=K)
        winners = (counts == counts.max()).nonzero().flatten().tolist()
        assert out[row].argmax().item() in winners
        if len(winners) > 1:  # ties go to the class with the higher mean probability
            mean = torch.stack([probs[m][row] for m in present]).mean(0)
            assert out[row].argmax().item() == max(winners, key=lambda c: mean[c].item())


def test_absent_modality_does_not_influence_output():
    for combine in ("weighted", "vote"):
        fusion = build(combine)
        enc, wild = make_encoded(), make_encoded()
        for f in MODS:
            p = wild[f.name].pooled.clone()
            p[~wild[f.name].mask] = float("nan")
            wild[f.name] = Encoded(p, None, wild[f.name].mask)
        with torch.no_grad():
            assert torch.equal(fusion(enc), fusion(wild))
            assert torch.isfinite(fusion(wild)).all()


def test_loss_trains_every_present_head_and_the_prior():
    for combine in ("weighted", "vote"):
        fusion = build(combine).train()
        enc = make_encoded(grad=True)
        task = task_of("multiclass")
        out = fusion(enc)
        fusion.loss(out, torch.tensor([0, 1, 2, 0, 1]), task).backward()
        for f in MODS:
            g = enc[f.name].pooled.grad
            m = enc[f.name].mask
            assert (g[m].abs().sum(1) > 0).all(), (combine, f.name)
            assert (g[~m] == 0).all(), (combine, f.name)
        assert fusion.empty.grad is not None and fusion.empty.grad.abs().sum() > 0  # row 3 has nothing present


def test_regression_weighted_and_vote_refused():
    fusion = build("weighted", "regression")
    with torch.no_grad():
        out = fusion(make_encoded())
    assert out.shape == (B, 1) and torch.isfinite(out).all()
    with pytest.raises(ConfigError, match="classification"):
        build("vote", "regression")
    with pytest.raises(ConfigError, match="late"):
        build_fusion("late", MODS, DIM, 0.0, {"combine": "average"}, task_of("multiclass"))


@pytest.mark.parametrize("combine", ["weighted", "vote"])
def test_fit_save_load_predict(train_csv, test_csv, tmp_path, combine):
    raw = tiny_config(max_epochs=1)
    raw["fusion"] = {"name": "late", "dim": 16, "combine": combine}
    p = Predictor("label", config=raw, verbose=False, seed=0).fit(train_csv)
    proba = p.predict_proba(test_csv)
    assert set(p.predict(test_csv).unique()) <= {"yes", "no"}
    assert ((proba.sum(axis=1) - 1).abs() < 1e-6).all()
    p.save(tmp_path / "run")
    again = Predictor.load(tmp_path / "run", verbose=False)
    pd.testing.assert_frame_equal(again.predict_proba(test_csv), proba)


def test_every_fusion_is_documented_with_its_parameters():
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[1] / "docs" / "USER_GUIDE.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(" `"): line for line in guide.splitlines() if line.startswith("| `")}
    for name in FUSIONS.names():
        assert name in rows, f"add fusion '{name}' to the table in docs/USER_GUIDE.md"
        for param in FUSIONS.get(name).Params.model_fields:
            assert param in rows[name], f"document parameter '{param}' of fusion '{name}'"
