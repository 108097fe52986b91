"""Multi-label classification: any number of tags per row, one sigmoid output per tag (binary cross-entropy), and a
decision threshold per tag tuned on the validation split after training (:meth:`MultilabelTask.calibrate`).

Labels are read by :mod:`polymodal.tags` (lists, JSON lists or tags joined by ``task.tag_separator``). The tags are
the ones seen in training; a tag seen only later is left out of the target with a warning.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from ..metrics.multilabel import DEFAULT_THRESHOLD, multilabel_metrics, predicted, sigmoid, tune_thresholds
from ..registry import TASKS, register
from ..tags import tag_lists
from .base import Task

log = logging.getLogger("polymodal")


@register(TASKS, "multilabel")
class MultilabelTask(Task):
    problem_type = "multilabel"
    target_dtype = torch.float32
    monitor = ("mAP", "max")  # threshold-free: the thresholds are tuned only after training
    stratify = False  # a row has several tags: there is no one class to stratify by

    # --- target encoding ------------------------------------------------------------------------------
    def tags_of(self, y: pd.Series) -> list[list[str] | None]:
        """Each row's tags (None: a missing label); a DataError naming the rows that hold no readable tags."""
        return tag_lists(y.tolist(), self.config.tag_separator, rows=y.index.tolist())

    def fit_target(self, y: pd.Series) -> None:
        rows = [t for t in self.tags_of(y) if t is not None]
        counts = Counter(tag for tags in rows for tag in tags)
        if not counts:
            raise DataError(
                f"no row of the label has a tag ({len(rows)} labelled rows, all empty): a multi-label model "
                "needs at least one tag",
                hint="Check the label column, and task.tag_separator if the tags are joined in one string.",
            )
        self.tags = sorted(counts)
        self.tag_counts = [counts[t] for t in self.tags]
        self.rows = len(rows)
        self.thresholds = [DEFAULT_THRESHOLD] * len(self.tags)
        self._build()

    def _build(self) -> None:
        self._index = {t: i for i, t in enumerate(self.tags)}
        self._pos_weight = None
        if self.config.class_weights == "balanced":
            pos = np.maximum(np.asarray(self.tag_counts, dtype=np.float64), 1)
            self._pos_weight = torch.tensor(np.maximum(self.rows - pos, 1) / pos, dtype=torch.float32)

    @property
    def classes(self) -> list[str]:
        """The tags, in output order (named like a classifier's classes for the consumers of both)."""
        return self.tags

    def indicators(self, y: pd.Series, warn: bool = True) -> np.ndarray:
        """[rows, tags] float32 0/1 matrix; a missing label is a row of NaN (left out of the loss). Tags not seen
        in training are left out (with a warning when ``warn``)."""
        out = np.zeros((len(y), len(self.tags)), dtype=np.float32)
        unseen: Counter[str] = Counter()
        for i, tags in enumerate(self.tags_of(y)):
            if tags is None:
                out[i] = np.nan
                continue
            for t in tags:
                k = self._index.get(t)
                if k is None:
                    unseen[t] += 1
                else:
                    out[i, k] = 1.0
        if unseen and warn:
            log.warning(
                "label '%s': %d tag(s) not seen in training are ignored (%s)",
                y.name,
                len(unseen),
                ", ".join(f"{t!r} in {n} rows" for t, n in unseen.most_common(5)) + (" ..." if len(unseen) > 5 else ""),
            )
        return out

    def encode_target(self, y: pd.Series) -> np.ndarray:
        return self.indicators(y)

    @property
    def n_outputs(self) -> int:
        return len(self.tags)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        known = ~torch.isnan(target)
        if not bool(known.any()):
            return outputs.sum() * 0
        w = None if self._pos_weight is None else self._pos_weight.to(outputs.device).expand_as(outputs)[known]
        return torch.nn.functional.binary_cross_entropy_with_logits(outputs.float()[known], target[known], pos_weight=w)

    # --- outputs --------------------------------------------------------------------------------------
    def predict_proba(self, outputs: np.ndarray) -> np.ndarray:
        """Each tag's probability, independently of the others."""
        return sigmoid(np.asarray(outputs, dtype=np.float64))

    def postprocess(self, outputs: np.ndarray) -> np.ndarray:
        """Each row's predicted tags as a list (in tag order; an empty list when none reaches its threshold)."""
        return self.tags_from_proba(self.predict_proba(outputs))

    def tags_from_proba(self, proba: np.ndarray) -> np.ndarray:
        """The tags whose probability (``proba``: [rows, tags], as :meth:`predict_proba` gives) reaches their
        threshold: an object array of lists, one per row."""
        decisions = predicted(np.asarray(proba, dtype=np.float64), np.asarray(self.thresholds))
        out = np.empty(len(decisions), dtype=object)
        for i, row in enumerate(decisions):
            out[i] = [self.tags[k] for k in np.flatnonzero(row)]
        return out

    def join(self, tags: list[str]) -> str:
        """One row's tags as one string: joined by ``task.tag_separator``, or a JSON list when a tag contains the
        separator (the joined string would not read back as the same tags)."""
        sep = self.config.tag_separator
        return json.dumps(tags) if any(sep in t for t in tags) else sep.join(tags)

    def metrics(self, y_true: pd.Series, outputs: np.ndarray) -> dict[str, float]:
        true = self.indicators(y_true)
        known = ~np.isnan(true).any(axis=1)
        proba = self.predict_proba(outputs)
        return multilabel_metrics(true[known] > 0.5, proba[known], np.asarray(self.thresholds))

    # --- learned from the validation split ----------------------------------------------------------
    def calibrate(self, outputs: Any, labels: pd.Series) -> None:
        """Tune each tag's decision threshold for its F1 on the validation rows (0.5 for a tag without a
        positive validation row)."""
        true = self.indicators(labels, warn=False)
        known = ~np.isnan(true).any(axis=1)
        self.thresholds = [float(t) for t in tune_thresholds(true[known] > 0.5, self.predict_proba(outputs)[known])]
        untuned = [t for t, n in zip(self.tags, (true[known] > 0.5).sum(axis=0)) if n == 0]
        log.info(
            "tuned the decision thresholds of %d tags on %d validation rows%s",
            len(self.tags) - len(untuned),
            int(known.sum()),
            f"; {len(untuned)} tag(s) without a positive validation row keep {DEFAULT_THRESHOLD}" if untuned else "",
        )

    def state(self) -> dict[str, Any]:
        return {"tags": self.tags, "tag_counts": self.tag_counts, "rows": self.rows, "thresholds": self.thresholds}

    def set_state(self, state: dict[str, Any]) -> None:
        self.tags, self.tag_counts, self.rows = state["tags"], state["tag_counts"], state["rows"]
        self.thresholds = [float(t) for t in state["thresholds"]]
        self._build()
