"""ROCKET for time-series columns: random convolutional kernels, two features per kernel, a ridge classifier.

Dempster, Petitjean and Webb, "ROCKET: exceptionally fast and accurate time series classification using random
convolutional kernels", Data Mining and Knowledge Discovery 34(5), 2020. Each kernel has a random length (7, 9 or
11), weights drawn from N(0, 1) and centred, a bias from U(-1, 1), a dilation ``floor(2 ** U(0, log2((L - 1) /
(length - 1))))`` for series of ``L`` steps, and padding half of the time; on several channels it reads a random
subset of them. Its features are the proportion of positive values (PPV) and the maximum of its output over the
observed steps. A ridge model on the standardised features (regularisation chosen by leave-one-out error on the
training rows, as ROCKET's ``RidgeClassifierCV``) makes the prediction; for classification its scores are scaled
by one temperature fitted on the same leave-one-out scores, so that they are usable logits in an ensemble.

Everything runs in torch on the processor's batch (standardised series and step masks), so training, prediction,
ONNX export and serving share one code path; the kernels are drawn from the member's seed and saved as tensors.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import make_loader
from ..errors import DataError
from .base import MEMBERS
from .classical import ClassicalMember
from .linear import ABSENT_CLASS_LOGIT

if TYPE_CHECKING:
    from ..data.dataset import Prepared
    from ..data.processors import Processor
    from ..schema import Modality
    from ..tasks import Task

KERNEL_LENGTHS = (7, 9, 11)
#: ridge regularisation tried (on standardised features), chosen by leave-one-out squared error
ALPHAS = tuple(float(a) for a in np.logspace(-1, 6, 15))
#: temperatures tried for the classification scores, chosen by leave-one-out log-loss
TEMPERATURES = tuple(float(t) for t in np.logspace(-1, 2.5, 36))
#: the feature matrix of the training rows is kept under this many values (kernels are fewer on large tables)
MAX_FEATURE_VALUES = 25_000_000
_NEG = -1e30  # "no observed step" for the maximum (finite, so that it exports and compares everywhere)


class KernelGroup(nn.Module):
    """Kernels sharing a length, a dilation and a padding: one ``conv1d``, then PPV and max per kernel."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, count: int, channels: int, length: int, dilation: int, padding: int) -> None:
        super().__init__()
        self.count, self.channels, self.length = int(count), int(channels), int(length)
        self.dilation, self.padding = int(dilation), int(padding)
        self.register_buffer("weight", torch.zeros(self.count, self.channels, self.length))
        self.register_buffer("bias", torch.zeros(self.count))

    def forward(self, x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """``x`` [B, C, L] and the observed ``steps`` [B, L] → [B, 2 * count] (PPV of every kernel, then max)."""
        out = F.conv1d(x, self.weight, self.bias, dilation=self.dilation, padding=self.padding)
        span = (self.length - 1) * self.dilation
        # an output position is observed when the last input step it reads is (the observed steps are a prefix)
        valid = (steps if self.padding else steps[:, span:])[:, : out.shape[2]].to(out.dtype)  # [B, T']
        count = valid.sum(1, keepdim=True)  # [B, 1]
        # unobserved positions pushed far below zero: then one comparison gives PPV and one reduction the max
        # (the output [B, k, T'] is the bulk of the work: as few passes over it as possible)
        out = out + ((valid - 1) * -_NEG).unsqueeze(1)
        ppv = (out > 0).sum(2, dtype=out.dtype) / count.clamp_min(1)
        peak = out.amax(2)
        peak = torch.where(count > 0, peak, torch.zeros_like(peak))
        return torch.cat([ppv, peak], dim=1)

    def spec(self) -> dict[str, int]:
        return {
            "count": self.count,
            "channels": self.channels,
            "length": self.length,
            "dilation": self.dilation,
            "padding": self.padding,
        }


class KernelBank(nn.Module):
    """ROCKET's kernels over one time-series modality: ``[B, 2 * kernels]`` features (zero for an absent cell)."""

    def __init__(self, modality: str, channels: int, groups: list[dict[str, int]]) -> None:
        super().__init__()
        self.modality, self.channels = modality, int(channels)
        self.groups = nn.ModuleList(KernelGroup(**g) for g in groups)

    @property
    def kernel_groups(self) -> list[KernelGroup]:
        return [cast(KernelGroup, g) for g in self.groups]

    @property
    def n_features(self) -> int:
        return 2 * sum(g.count for g in self.kernel_groups)

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        x = inputs[self.modality][:, : self.channels].float()  # the last input channel is the missing share
        steps = inputs[f"{self.modality}.mask"].bool()
        x = x * steps.unsqueeze(1).to(x.dtype)  # past a row's end: zeros, ROCKET's padding, whatever the batch holds
        feats = torch.cat([g(x, steps) for g in self.kernel_groups], dim=1)
        return feats * masks[self.modality].unsqueeze(1).to(feats.dtype)

    def spec(self) -> dict[str, Any]:
        return {"modality": self.modality, "channels": self.channels, "groups": [g.spec() for g in self.kernel_groups]}

    @classmethod
    def random(cls, modality: str, channels: int, steps: int, kernels: int, rng: np.random.Generator) -> KernelBank:
        """``kernels`` kernels drawn as ROCKET draws them, for series of ``steps`` steps and ``channels`` channels."""
        drawn: dict[tuple[int, int, int], list[tuple[np.ndarray, float]]] = {}
        for _ in range(kernels):
            length = int(rng.choice(KERNEL_LENGTHS))
            length = min(length, max(1, steps))  # (a series shorter than the kernel: one step per tap)
            reach = math.log2((steps - 1) / (length - 1)) if steps > length > 1 else 0.0
            dilation = int(2 ** rng.uniform(0, reach))
            padding = (length - 1) * dilation // 2 if rng.integers(2) else 0
            n_used = min(channels, int(2 ** rng.uniform(0, math.log2(channels + 1))))
            used = rng.choice(channels, size=max(1, n_used), replace=False)
            w = np.zeros((channels, length), np.float32)
            taps = rng.standard_normal((len(used), length))
            w[used] = taps - taps.mean()
            drawn.setdefault((length, dilation, padding), []).append((w, float(rng.uniform(-1, 1))))
        groups = [
            {"count": len(ks), "channels": channels, "length": k[0], "dilation": k[1], "padding": k[2]}
            for k, ks in sorted(drawn.items())
        ]
        bank = cls(modality, channels, groups)
        with torch.no_grad():
            for g, key in zip(bank.kernel_groups, sorted(drawn)):
                g.weight.copy_(torch.from_numpy(np.stack([w for w, _ in drawn[key]])))
                g.bias.copy_(torch.tensor([b for _, b in drawn[key]], dtype=torch.float32))
        return bank


@MEMBERS.register("rocket")
class RocketMember(ClassicalMember):
    """ROCKET (Dempster et al. 2020) on the time-series columns: random convolutional kernels (up to 10,000, fewer
    on large tables), the proportion of positive values and the maximum of each, and a ridge model with its
    regularisation chosen by leave-one-out error on the training rows."""

    name = "rocket"
    kinds = ("timeseries",)
    max_kernels: ClassVar[int] = 10_000
    min_kernels: ClassVar[int] = 1_000

    feature_mean: torch.Tensor
    feature_scale: torch.Tensor

    def __init__(self, banks: list[KernelBank], n_outputs: int, info: dict[str, Any]) -> None:
        super().__init__()
        self.banks, self.n_outputs, self.info = nn.ModuleList(banks), int(n_outputs), info
        self.bank_list: list[KernelBank] = list(banks)  # (typed; the ModuleList holds them for the state dict)
        n_features = sum(b.n_features for b in banks)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_scale", torch.ones(n_features))
        self.linear = nn.Linear(n_features, self.n_outputs)

    def features(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """The standardised ROCKET features [B, F] of a batch."""
        raw = torch.cat([b(inputs, masks) for b in self.bank_list], dim=1)
        return (raw - self.feature_mean) / self.feature_scale

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(self.features(inputs, masks))

    @classmethod
    def kernels_for(cls, n_rows: int, n_modalities: int) -> int:
        """Kernels per modality: ROCKET's 10,000 on small tables, fewer when the training features would not fit
        in :data:`MAX_FEATURE_VALUES` values."""
        fit = MAX_FEATURE_VALUES // max(1, 2 * n_rows * n_modalities)
        return int(min(cls.max_kernels, max(cls.min_kernels, fit)))

    @classmethod
    def fit(
        cls,
        train: Prepared,
        val: Prepared,
        modalities: list[Modality],
        processors: dict[str, Processor],
        task: Task,
        *,
        seed: int = 0,
        time_limit: float | None = None,
    ) -> RocketMember:
        """Draw the kernels from ``seed``, compute the training rows' features, fit the ridge model (``val`` is not
        used: the regularisation and temperature come from leave-one-out on ``train``, which leaves the validation
        rows to the ensemble's selection). ``time_limit`` is not checked: the fit is one pass and a solve."""
        cls.check_task(cls.name, task)
        start = time.perf_counter()
        used = cls.used(modalities)
        y, keep = cls.targets(train, task)
        if len(keep) < 3:
            raise DataError(f"member '{cls.name}' needs at least 3 training rows with a label; got {len(keep)}")
        regression = task.problem_type == "regression"
        if not regression and len(np.unique(y)) < 2:
            raise DataError(f"member '{cls.name}' needs at least 2 classes among the training rows")
        rng = np.random.default_rng(seed)
        kernels = cls.kernels_for(len(keep), len(used))
        banks = []
        for m in used:
            proc: Any = processors[m.name]
            banks.append(KernelBank.random(m.name, int(proc.channels or 1), int(proc.length), kernels, rng))
        member = cls(banks, task.n_outputs, {})
        procs = {m.name: processors[m.name] for m in used}
        x = member.raw_features(train, procs)[keep].astype(np.float64)
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 1e-6, scale, 1.0)
        z = (x - mean) / scale
        targets, present = _ridge_targets(y, task.n_outputs, regression)
        alpha, coef, intercept, loo = _ridge_loo(z, targets)
        temperature = 1.0
        w = np.zeros((task.n_outputs, z.shape[1]))
        b = np.full(task.n_outputs, 0.0 if regression else ABSENT_CLASS_LOGIT)
        if regression:
            w[:], b[:] = coef.T, intercept
        else:
            temperature = _temperature(loo, y, present)
            w[present], b[present] = temperature * coef.T, temperature * intercept
        with torch.no_grad():
            member.feature_mean.copy_(torch.from_numpy(mean).float())
            member.feature_scale.copy_(torch.from_numpy(scale).float())
            member.linear.weight.copy_(torch.from_numpy(w).float())
            member.linear.bias.copy_(torch.from_numpy(b).float())
        importance = np.abs(w).mean(axis=0)
        per_bank = np.cumsum([0, *(bank.n_features for bank in banks)])
        totals = {bank.modality: float(importance[per_bank[i] : per_bank[i + 1]].sum()) for i, bank in enumerate(banks)}
        total = sum(totals.values())
        member.info = {
            "kernels_per_column": kernels,
            "alpha": alpha,
            "temperature": round(float(temperature), 6),
            "importance": {k: v / total for k, v in totals.items()} if total > 0 else {},
            "fit_seconds": round(time.perf_counter() - start, 3),
        }
        return member.eval()

    @torch.no_grad()
    def raw_features(self, rows: Prepared, processors: dict[str, Processor]) -> np.ndarray:
        """The unstandardised features [rows, F] of decoded rows (the processors' evaluation batches)."""
        parts = []
        for batch in make_loader(rows, processors, 128, False, torch.float32):
            parts.append(torch.cat([b(batch.inputs, batch.masks) for b in self.bank_list], dim=1).numpy())
        return np.concatenate(parts) if parts else np.zeros((0, sum(b.n_features for b in self.bank_list)), np.float32)

    def spec(self) -> dict[str, Any]:
        return {
            "member": self.name,
            "modalities": [b.modality for b in self.bank_list],
            "banks": [b.spec() for b in self.bank_list],
            "n_outputs": self.n_outputs,
            **self.info,
        }

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any], modalities: list[Modality], processors: dict[str, Processor], task: Task
    ) -> RocketMember:
        cls.check_modalities(cls.name, spec, modalities)
        info = {k: v for k, v in spec.items() if k not in ("member", "modalities", "banks", "n_outputs")}
        banks = [KernelBank(b["modality"], b["channels"], b["groups"]) for b in spec["banks"]]
        return cls(banks, spec["n_outputs"], info).eval()


def _ridge_targets(y: np.ndarray, n_outputs: int, regression: bool) -> tuple[np.ndarray, np.ndarray]:
    """(targets [n, k], the output columns they stand for): the value for regression; for classification +1 / -1
    per class present in training (scikit-learn's ``RidgeClassifier`` coding)."""
    if regression:
        return y.astype(np.float64)[:, None], np.arange(1)
    present = np.unique(y.astype(np.int64))
    return np.where(y.astype(np.int64)[:, None] == present[None, :], 1.0, -1.0), present


def _ridge_loo(z: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Ridge on standardised ``z`` (an intercept, unpenalised) for each alpha of :data:`ALPHAS`; the one with the
    smallest leave-one-out squared error (closed form from the hat matrix). Returns (alpha, coef [F, k],
    intercept [k], leave-one-out predictions [n, k])."""
    n = len(z)
    zc = z - z.mean(axis=0)
    tm = t.mean(axis=0)
    tc = t - tm
    u, s, vt = np.linalg.svd(zc, full_matrices=False)
    ut = u.T @ tc
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in ALPHAS:
        shrink = s**2 / (s**2 + alpha)
        fitted = u @ (shrink[:, None] * ut) + tm
        hat = (u**2 * shrink).sum(axis=1) + 1.0 / n
        residual = (t - fitted) / np.maximum(1.0 - hat, 1e-9)[:, None]
        err = float((residual**2).mean())
        if best is None or err < best[1] - 1e-12:
            best = (alpha, err, t - residual)
    assert best is not None
    alpha, _, loo = best
    coef = vt.T @ ((s / (s**2 + alpha))[:, None] * ut)
    intercept = tm - z.mean(axis=0) @ coef
    return alpha, coef, intercept, loo


def _temperature(scores: np.ndarray, y: np.ndarray, present: np.ndarray) -> float:
    """The scale of the ridge scores (columns: ``present`` classes) with the smallest leave-one-out log-loss."""
    target = np.searchsorted(present, y.astype(np.int64))
    best = (1.0, math.inf)
    for t in TEMPERATURES:
        logits = t * scores
        logits = logits - logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = float(-logp[np.arange(len(target)), target].mean())
        if loss < best[1]:
            best = (t, loss)
    return best[0]
