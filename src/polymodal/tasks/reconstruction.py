"""Reconstruction (an autoencoder) and anomaly scores: no label; each row is scored by how badly it reconstructs.

The network (the "autoencoder" architecture, :mod:`polymodal.autoencoder`) encodes every modality, fuses them,
squeezes the fused vector through a bottleneck (``task.reconstruction``) and decodes each modality from it. Its
output per row is ``[joint (M), cross (M), present (M), cross present (M), kl]``: each scored modality's
reconstruction error from the code of all the row's modalities (joint) and from the code of the others alone (cross,
computed at prediction only), each scaled so that predicting the mean costs about 1; whether each exists; the
bottleneck's KL term (0 unless variational); and, with the agreement term on (``agreement`` > 0, two or more
modalities), the row's agreement loss (InfoNCE between its modalities' embeddings), its disagreement (1 - cosine)
and whether it has them. The loss is the weighted sum of the present joint errors plus ``kl_weight`` times the KL
term plus ``agreement`` times the mean agreement loss.

There is no label: a fit adds a constant column (:data:`ANOMALY_COLUMN`) as the label, so that the one split rule,
the decoders and the training loop work unchanged. At evaluation the same column carries the user's anomaly flags
(``evaluate(..., anomaly_label="is_anomaly")``), and the metrics add ROC-AUC and average precision of the scores.

Anomaly scores: after training, :meth:`ReconstructionTask.calibrate` learns each modality's joint and cross error
mean and standard deviation on the validation rows (and the disagreement's); ``anomaly_<modality>`` is a row's
error (joint, or cross when ``task.reconstruction.score`` names cross) as a z-score against them,
``anomaly_crossmodal`` the row's disagreement as a z-score, and ``anomaly_score`` what ``score`` says: the mean of
the row's present modalities' z-scores, the cross-modal one, or the two added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from ..config import PolymodalConfig, TaskConfig
from ..data.readers import Table
from ..errors import DataError, RowIssue, SchemaError, row_label
from ..registry import TASKS, register
from .base import Task

#: the column a reconstruction fit adds to the table as its label (constant), and that evaluation fills with the
#: anomaly flags of ``--anomaly-label``
ANOMALY_COLUMN = "__anomaly__"

#: the output columns of predict: the row's score, then ``anomaly_<modality>`` per scored modality, then (with the
#: agreement term) :data:`CROSSMODAL_COLUMN`
SCORE_COLUMN = "anomaly_score"
CROSSMODAL_COLUMN = "anomaly_crossmodal"

#: the row scores ``task.reconstruction.score`` chooses from (and that evaluation reports a ROC-AUC of each)
SCORES = ("joint", "cross", "agreement", "joint+agreement", "cross+agreement")

_TRUE = {"1", "true", "yes", "y", "t", "anomaly", "anomalous", "abnormal", "outlier"}
_FALSE = {"0", "false", "no", "n", "f", "normal", "inlier"}


def anomaly_flags(y: pd.Series) -> np.ndarray:
    """``y`` as booleans (True = anomaly): numbers (non-zero is an anomaly), booleans, or words such as
    true/false, yes/no, anomaly/normal. Any other value is a :class:`DataError` naming the rows."""
    out = np.zeros(len(y), dtype=bool)
    bad: list[int] = []
    for i, v in enumerate(y.tolist()):
        if isinstance(v, (bool, np.bool_)):
            out[i] = bool(v)
            continue
        if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v):
            out[i] = v != 0
            continue
        text = str(v).strip().lower()
        if text in _TRUE:
            out[i] = True
        elif text not in _FALSE:
            try:
                x = float(text)
            except ValueError:
                bad.append(i)
                continue
            out[i] = x != 0
    if bad:
        column = str(y.name)
        raise DataError(
            f"the anomaly label must say whether each row is an anomaly; {len(bad)} rows hold something else:",
            [RowIssue(row_label(y.index[i]), column, f"{y.iloc[i]!r} is not 0/1, true/false or yes/no") for i in bad],
            hint="Use 1 (or true) for anomalies and 0 (or false) for normal rows.",
        )
    return out


def reconstruction_table(table: Table, anomaly_label: str | None = None) -> Table:
    """``table`` with :data:`ANOMALY_COLUMN` added: 0 for every row (a fit, or an evaluation without anomaly
    flags), else a copy of the ``anomaly_label`` column (rows where it is empty are left out of evaluation)."""
    frame = table.frame
    if ANOMALY_COLUMN in frame.columns:
        raise SchemaError(f"column '{ANOMALY_COLUMN}' is reserved by reconstruction models; rename it")
    if anomaly_label is not None and anomaly_label not in frame.columns:
        raise SchemaError(
            f"anomaly label column '{anomaly_label}' is not in the table; its columns are: "
            f"{', '.join(map(str, frame.columns))}"
        )
    frame = frame.copy()
    frame[ANOMALY_COLUMN] = 0 if anomaly_label is None else frame[anomaly_label]
    return Table(frame, table.root, table.source)


@dataclass
class Parts:
    """The network's outputs split by meaning: ``[N, M]`` joint errors, cross errors and their presence (1/0),
    ``[N]`` KL terms and, with the agreement term (else None), ``[N]`` agreement losses, disagreements and their
    presence."""

    joint: Any
    cross: Any
    present: Any
    cross_present: Any
    kl: Any
    agree_loss: Any = None
    disagreement: Any = None
    agree_present: Any = None


def _stats(errors: np.ndarray, present: np.ndarray) -> tuple[list[float], list[float]]:
    """Per column: the mean and standard deviation of the present, finite errors (0 and 1 when there are none)."""
    means, stds = [], []
    for j in range(errors.shape[1]):
        e = errors[present[:, j] > 0.5, j]
        e = e[np.isfinite(e)]
        mean = float(e.mean()) if len(e) else 0.0
        std = float(e.std()) if len(e) > 1 else 0.0
        means.append(mean)
        stds.append(std if std > 1e-8 * max(abs(mean), 1.0) else 1.0)
    return means, stds


def _z(errors: np.ndarray, present: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    z = (errors - np.asarray(mean, dtype=np.float64)) / np.asarray(std, dtype=np.float64)
    return np.where(present > 0.5, z, np.nan)


def _auc(flags: np.ndarray, score: np.ndarray) -> float | None:
    ok = ~np.isnan(score)
    if not 0 < flags[ok].sum() < ok.sum():
        return None
    return float(roc_auc_score(flags[ok], score[ok]))


@register(TASKS, "reconstruction")
class ReconstructionTask(Task):
    problem_type = "reconstruction"
    target_dtype = torch.float32
    architecture = "autoencoder"
    monitor = ("reconstruction_error", "min")

    def __init__(self, config: TaskConfig):
        super().__init__(config)
        self.settings = config.reconstruction
        self.names: list[str] = []  # the scored modalities, in output order (set by the network's builder)
        self.weights: list[float] = []
        self.error_mean: list[float] = []
        self.error_std: list[float] = []
        self.cross_mean: list[float] = []
        self.cross_std: list[float] = []
        self.crossmodal = False  # whether the network has the agreement term (set by its builder)
        self.agree_mean, self.agree_std = 0.0, 1.0
        self.saved_crossmodal: bool | None = None  # a loaded run's: its network has the agreement term (or not)

    def resolve(self, config: PolymodalConfig, kinds: set[str]) -> None:
        self.settings = config.task.reconstruction

    # --- the scored modalities: the network's builder says which ones have a decoder ------------------------
    def set_modalities(self, names: list[str], kinds: list[str], crossmodal: bool = False) -> None:
        """Record the scored modalities (``names``, of ``kinds``) in the network's output order, and whether the
        network has the agreement term (``crossmodal``); the loss weights come from ``task.reconstruction.weights``
        (a modality's name first, then its kind; default 1). A loaded task keeps its calibration when the names are
        the ones it was saved with."""
        w = self.settings.weights
        self.weights = [float(w.get(n, w.get(k, 1.0))) for n, k in zip(names, kinds, strict=True)]
        if names != self.names or len(self.error_mean) != len(names) or len(self.cross_mean) != len(names):
            self.error_mean, self.error_std = [0.0] * len(names), [1.0] * len(names)
            self.cross_mean, self.cross_std = [0.0] * len(names), [1.0] * len(names)
        if crossmodal != self.crossmodal:
            self.agree_mean, self.agree_std = 0.0, 1.0
        self.names, self.crossmodal = list(names), crossmodal

    @property
    def n_outputs(self) -> int:
        return 4 * len(self.names) + 1 + (3 if self.crossmodal else 0)

    # --- targets: none (the label column is a constant, or the anomaly flags at evaluation) -----------------
    def fit_target(self, y: pd.Series) -> None:
        pass

    def encode_target(self, y: pd.Series) -> np.ndarray:
        return np.zeros(len(y), dtype=np.float32)

    # --- loss -----------------------------------------------------------------------------------------------
    def split(self, outputs: Any) -> Parts:
        m = len(self.names)
        agree = [outputs[:, 4 * m + 1 + i] for i in range(3)] if self.crossmodal else [None] * 3
        return Parts(
            outputs[:, :m],
            outputs[:, m : 2 * m],
            outputs[:, 2 * m : 3 * m],
            outputs[:, 3 * m : 4 * m],
            outputs[:, 4 * m],
            *agree,
        )

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted joint errors of the present modalities, plus ``kl_weight`` times the KL term, plus
        ``agreement`` times the mean agreement loss of the rows that have one."""
        p = self.split(outputs.float())
        w = torch.tensor(self.weights, dtype=p.joint.dtype, device=p.joint.device)
        total = (p.joint * p.present * w).sum(1).mean() + self.settings.kl_weight * p.kl.mean()
        if p.agree_loss is not None and self.settings.agreement > 0:
            rows = p.agree_present.sum().clamp(min=1)
            total = total + self.settings.agreement * (p.agree_loss * p.agree_present).sum() / rows
        return total

    # --- scores ---------------------------------------------------------------------------------------------
    def modality_scores(self, outputs: np.ndarray, score: str | None = None) -> np.ndarray:
        """``[N, M]`` per-modality anomaly scores, NaN where the row lacks the modality: z-scores of the errors
        against validation. ``score`` (default ``task.reconstruction.score``): one that names "cross" scores cross
        errors (the modality reconstructed from the others; the joint one where a row has no other modality), any
        other the joint errors."""
        p = self.split(np.asarray(outputs, dtype=np.float64))
        joint = _z(p.joint, p.present, self.error_mean, self.error_std)
        if "cross" not in (score or self.settings.score):
            return joint
        cross = _z(p.cross, p.cross_present, self.cross_mean, self.cross_std)
        return np.where(np.isnan(cross), joint, cross)

    def crossmodal_scores(self, outputs: np.ndarray) -> np.ndarray:
        """``[N]`` cross-modal anomaly scores: the disagreement of the row's modality embeddings as a z-score
        against validation; NaN where the row has fewer than two modalities or the network no agreement term."""
        p = self.split(np.asarray(outputs, dtype=np.float64))
        if p.disagreement is None:
            return np.full(len(p.kl), np.nan)
        z = (p.disagreement - self.agree_mean) / self.agree_std
        return np.where(p.agree_present > 0.5, z, np.nan)

    def row_scores(self, per_modality: np.ndarray) -> np.ndarray:
        """Each row's mean of its present modalities' scores (NaN when none is present)."""
        present = ~np.isnan(per_modality)
        total = np.where(present, per_modality, 0.0).sum(1)
        count = present.sum(1)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def scores(self, outputs: np.ndarray, score: str | None = None) -> np.ndarray:
        """``[N]`` row anomaly scores of the kind ``score`` (default ``task.reconstruction.score``, see
        :data:`SCORES`): the modalities' mean, the cross-modal score, or the two added; where a row has no
        cross-modal score, the modalities' mean alone."""
        kind = score or self.settings.score
        per = self.row_scores(self.modality_scores(outputs, kind))
        if "agreement" not in kind:
            return per
        cross = self.crossmodal_scores(outputs)
        combined = cross if kind == "agreement" else per + cross
        return np.where(np.isnan(cross), per, combined)

    def postprocess(self, outputs: np.ndarray) -> np.ndarray:
        return self.scores(outputs)

    def predictions(self, outputs: np.ndarray, index: pd.Index) -> pd.DataFrame:
        """``anomaly_score``, one ``anomaly_<modality>`` column per scored modality and, with the agreement term,
        ``anomaly_crossmodal``, indexed by ``index``."""
        per = self.modality_scores(outputs)
        frame = pd.DataFrame({SCORE_COLUMN: self.scores(outputs)}, index=index)
        for j, name in enumerate(self.names):
            frame[f"anomaly_{name}"] = per[:, j]
        if self.crossmodal:
            frame[CROSSMODAL_COLUMN] = self.crossmodal_scores(outputs)
        return frame

    # --- metrics --------------------------------------------------------------------------------------------
    def metrics(self, y_true: pd.Series, outputs: np.ndarray) -> dict[str, float]:
        """Reconstruction errors (``reconstruction_error``: the weighted joint loss without the KL term;
        ``error_<m>`` and ``cross_error_<m>``: each modality's mean over the rows that have it; ``disagreement``,
        with the agreement term); with anomaly flags of both kinds in ``y_true``, also ``roc_auc`` and
        ``average_precision`` of ``anomaly_score``, ``roc_auc_<m>`` per modality, and ``roc_auc_<kind>`` for each
        row score of :data:`SCORES` (``roc_auc_joint``, ``roc_auc_cross``, ``roc_auc_agreement``, ...; those with
        "agreement" only with the agreement term)."""
        outputs = np.asarray(outputs, dtype=np.float64)
        p = self.split(outputs)
        out: dict[str, float] = {}
        if len(outputs):
            out["reconstruction_error"] = float((p.joint * p.present * np.asarray(self.weights)).sum(1).mean())
        for j, name in enumerate(self.names):
            rows = p.present[:, j] > 0.5
            out[f"error_{name}"] = float(p.joint[rows, j].mean()) if rows.any() else float("nan")
            cross = p.cross_present[:, j] > 0.5
            if cross.any():
                out[f"cross_error_{name}"] = float(p.cross[cross, j].mean())
        if p.disagreement is not None and (p.agree_present > 0.5).any():
            out["disagreement"] = float(p.disagreement[p.agree_present > 0.5].mean())
        flags = anomaly_flags(y_true)
        if not (len(flags) and 0 < flags.sum() < len(flags)):
            return out
        per = self.modality_scores(outputs)
        score = self.scores(outputs)
        ok = ~np.isnan(score)
        out["anomalies"] = float(flags.sum())
        out["roc_auc"] = float(roc_auc_score(flags[ok], score[ok]))
        out["average_precision"] = float(average_precision_score(flags[ok], score[ok]))
        for kind in SCORES:
            if "agreement" in kind and not self.crossmodal:
                continue
            auc = _auc(flags, self.scores(outputs, kind))
            if auc is not None:
                out[f"roc_auc_{kind}"] = auc
        for j, name in enumerate(self.names):
            auc = _auc(flags, per[:, j])
            if auc is not None:
                out[f"roc_auc_{name}"] = auc
        return out

    # --- learned after training: each modality's error scale on validation ----------------------------------
    def calibrate(self, outputs: Any, labels: pd.Series) -> None:
        p = self.split(np.asarray(outputs, dtype=np.float64))
        self.error_mean, self.error_std = _stats(p.joint, p.present)
        self.cross_mean, self.cross_std = _stats(p.cross, p.cross_present)
        if p.disagreement is not None:
            (self.agree_mean,), (self.agree_std,) = _stats(p.disagreement[:, None], p.agree_present[:, None])

    def calibration_summary(self) -> dict[str, Any] | None:
        if not self.names:
            return None
        out: dict[str, Any] = {
            key: dict(zip(self.names, getattr(self, key), strict=True))
            for key in ("error_mean", "error_std", "cross_mean", "cross_std")
        }
        if self.crossmodal:
            out["disagreement_mean"], out["disagreement_std"] = self.agree_mean, self.agree_std
        return out

    # --- persistence ----------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "weights": self.weights,
            "error_mean": self.error_mean,
            "error_std": self.error_std,
            "cross_mean": self.cross_mean,
            "cross_std": self.cross_std,
            "crossmodal": self.crossmodal,
            "agree_mean": self.agree_mean,
            "agree_std": self.agree_std,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.names = [str(n) for n in state["names"]]
        self.weights = [float(w) for w in state["weights"]]
        for key in ("error_mean", "error_std", "cross_mean", "cross_std"):
            setattr(self, key, [float(v) for v in state[key]])
        # runs saved before the agreement term have none
        self.crossmodal = self.saved_crossmodal = bool(state.get("crossmodal", False))
        self.agree_mean, self.agree_std = float(state.get("agree_mean", 0.0)), float(state.get("agree_std", 1.0))


def is_reconstruction(problem_type: str | None) -> bool:
    return problem_type == ReconstructionTask.problem_type


__all__ = [
    "ANOMALY_COLUMN",
    "CROSSMODAL_COLUMN",
    "SCORES",
    "SCORE_COLUMN",
    "ReconstructionTask",
    "anomaly_flags",
    "is_reconstruction",
    "reconstruction_table",
]
