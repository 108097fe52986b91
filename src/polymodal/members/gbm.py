"""Gradient-boosted trees (LightGBM) as a torch module.

LightGBM learns the trees; its model (``Booster.dump_model()``) is then converted into flat node tensors held as
buffers, and the module evaluates all trees at once by walking every (row, tree) pair one level per step (a gather
per level, no Python per row). It reproduces ``Booster.predict(raw_score=True)`` (tested to 1e-5), is saved as
tensors (safetensors, no pickle) and traces into ONNX like any module.

Category columns are passed as their index (a numeric feature, NaN when missing): LightGBM's categorical splits
(bitsets) are not used.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import DataError
from .base import MEMBERS
from .classical import ClassicalMember
from .features import FeatureSet, column_importance

if TYPE_CHECKING:
    from ..data.dataset import Prepared
    from ..data.processors import Processor
    from ..schema import Modality
    from ..tasks import Task

_ZERO = 1e-35  # LightGBM's kZeroThreshold: |x| at or below it is zero for its missing_type "Zero"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MISSING_TYPES = {"None": 0, "Zero": 1, "NaN": 2}


class Forest(nn.Module):
    """Flat tree arrays and their vectorised evaluation: ``forward(x [B, F] float32) -> raw scores [B, G] float64``.

    Per node: the split ``feature``, ``threshold`` (the largest float32 at or below LightGBM's double threshold, so
    that ``x <= threshold`` decides exactly as LightGBM does for float32 inputs), ``left``/``right`` children,
    ``default_left`` and the missing rule, and the leaf ``value`` (leaves point to themselves). ``roots``: the first
    node of each tree; ``groups`` [T, G]: which output each tree adds to (one per class in multiclass).
    """

    feature: torch.Tensor
    threshold: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    default_left: torch.Tensor
    nan_missing: torch.Tensor
    zero_missing: torch.Tensor
    value: torch.Tensor
    roots: torch.Tensor
    groups: torch.Tensor

    def __init__(self, n_nodes: int, n_trees: int, n_groups: int, depth: int) -> None:
        super().__init__()
        self.n_nodes, self.n_trees, self.n_groups, self.depth = n_nodes, n_trees, n_groups, depth
        self.register_buffer("feature", torch.zeros(n_nodes, dtype=torch.long))
        self.register_buffer("threshold", torch.zeros(n_nodes, dtype=torch.float32))
        self.register_buffer("left", torch.zeros(n_nodes, dtype=torch.long))
        self.register_buffer("right", torch.zeros(n_nodes, dtype=torch.long))
        self.register_buffer("default_left", torch.zeros(n_nodes, dtype=torch.bool))
        self.register_buffer("nan_missing", torch.zeros(n_nodes, dtype=torch.bool))
        self.register_buffer("zero_missing", torch.zeros(n_nodes, dtype=torch.bool))
        self.register_buffer("value", torch.zeros(n_nodes, dtype=torch.float64))
        self.register_buffer("roots", torch.zeros(n_trees, dtype=torch.long))
        self.register_buffer("groups", torch.zeros(n_trees, n_groups, dtype=torch.float64))

    def sizes(self) -> dict[str, int]:
        return {"n_nodes": self.n_nodes, "n_trees": self.n_trees, "n_groups": self.n_groups, "depth": self.depth}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, T]: every row starts at every root (the broadcast keeps the batch size symbolic when traced)
        node = self.roots.unsqueeze(0) + torch.zeros_like(x[:, :1], dtype=torch.long)
        for _ in range(self.depth):
            v = x.gather(1, self.feature[node])
            nan = torch.isnan(v)
            v = torch.where(nan, torch.zeros_like(v), v)  # LightGBM reads NaN as 0 unless NaN is its missing rule
            missing = (self.nan_missing[node] & nan) | (self.zero_missing[node] & (v.abs() <= _ZERO))
            # logical ops, not where(): ONNX Runtime has no Where kernel for booleans
            go_left = (missing & self.default_left[node]) | (~missing & (v <= self.threshold[node]))
            node = torch.where(go_left, self.left[node], self.right[node])
        return self.value[node] @ self.groups

    @classmethod
    def from_dump(cls, dump: dict[str, Any]) -> Forest:
        """The forest of a LightGBM model (``Booster.dump_model()``)."""
        n_groups = int(dump.get("num_tree_per_iteration", 1))
        rows: dict[str, list[Any]] = {
            k: [] for k in ("feature", "threshold", "left", "right", "default_left", "missing", "value")
        }
        roots: list[int] = []
        depth = 0

        def add(n: dict[str, Any], d: int) -> int:
            nonlocal depth
            i = len(rows["feature"])
            for k in rows:
                rows[k].append(0)
            if "split_index" not in n:  # a leaf (also a tree that is one leaf)
                rows["left"][i] = rows["right"][i] = i
                rows["value"][i] = float(n["leaf_value"])
                depth = max(depth, d)
                return i
            if n["decision_type"] != "<=":
                raise DataError(
                    f"LightGBM made a '{n['decision_type']}' split, which the gbm member does not evaluate "
                    "(categorical splits are not used: categories are passed as numeric indices)"
                )
            rows["threshold"][i] = float32_floor(float(n["threshold"]))
            rows["feature"][i] = int(n["split_feature"])
            rows["default_left"][i] = bool(n["default_left"])
            rows["missing"][i] = _MISSING_TYPES[n["missing_type"]]
            rows["left"][i] = add(n["left_child"], d + 1)
            rows["right"][i] = add(n["right_child"], d + 1)
            return i

        for tree in dump["tree_info"]:
            roots.append(add(tree["tree_structure"], 0))
        forest = cls(len(rows["feature"]), len(roots), n_groups, depth)
        missing = np.asarray(rows["missing"])
        with torch.no_grad():
            forest.feature.copy_(torch.tensor(rows["feature"], dtype=torch.long))
            forest.threshold.copy_(torch.from_numpy(np.asarray(rows["threshold"], dtype=np.float32)))
            forest.left.copy_(torch.tensor(rows["left"], dtype=torch.long))
            forest.right.copy_(torch.tensor(rows["right"], dtype=torch.long))
            forest.default_left.copy_(torch.tensor(rows["default_left"], dtype=torch.bool))
            forest.nan_missing.copy_(torch.from_numpy(missing == _MISSING_TYPES["NaN"]))
            forest.zero_missing.copy_(torch.from_numpy(missing == _MISSING_TYPES["Zero"]))
            forest.value.copy_(torch.tensor(rows["value"], dtype=torch.float64))
            forest.roots.copy_(torch.tensor(roots, dtype=torch.long))
            forest.groups.zero_()
            forest.groups[torch.arange(len(roots)), torch.arange(len(roots)) % n_groups] = 1.0
        return forest


def float32_floor(threshold: float) -> np.float32:
    """The largest float32 at or below ``threshold``: for every float32 ``x``, ``x <= result`` iff
    ``x <= threshold`` (LightGBM's thresholds are doubles, some ±1e300 for "always")."""
    if threshold >= _FLOAT32_MAX:
        return np.float32(np.inf)
    if threshold < -_FLOAT32_MAX:
        return np.float32(-np.inf)
    t = np.float32(threshold)
    return np.nextafter(t, np.float32(-np.inf)) if float(t) > threshold else t


def default_params(task: Task, n_train: int, seed: int, threads: int) -> dict[str, Any]:
    """LightGBM settings for small tables: small leaves on tiny tables, deterministic, few threads."""
    objective = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}[task.problem_type]
    params: dict[str, Any] = {
        "objective": objective,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": int(max(2, min(20, n_train // 20))),
        "min_data_in_bin": 1 if n_train < 200 else 3,
        "feature_fraction": 0.9,
        "feature_fraction_seed": seed,
        "lambda_l2": 1.0,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": threads,
        "verbosity": -1,
        "feature_pre_filter": False,
    }
    if objective == "multiclass":
        params["num_class"] = task.n_outputs
    return params


@MEMBERS.register("gbm")
class GBMMember(ClassicalMember):
    """LightGBM gradient boosting on the tabular columns and TF-IDF of the text columns (the ``max_text_features``
    most frequent token ids per text column); early stopping on the validation rows."""

    name = "gbm"
    booster: Any  # the LightGBM model after fit (not saved)
    #: token ids kept per text column (by document frequency)
    max_text_features: ClassVar[int] = 2000
    max_rounds: ClassVar[int] = 2000
    patience: ClassVar[int] = 50

    def __init__(self, features: FeatureSet, forest: Forest, n_outputs: int, info: dict[str, Any]) -> None:
        super().__init__()
        self.features, self.forest, self.n_outputs, self.info = features, forest, n_outputs, info

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        raw = self.forest(self.features(inputs, masks)).float()
        if self.n_outputs == 2 and raw.shape[1] == 1:  # binary: the raw score is the second class's logit
            return torch.cat([torch.zeros_like(raw), raw], dim=1)
        return raw

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
        params: dict[str, Any] | None = None,
        threads: int = 1,
    ) -> GBMMember:
        """Fit on ``train`` (``val`` for early stopping). ``params`` override LightGBM settings
        (:func:`default_params`); ``threads``: LightGBM's threads."""
        import lightgbm as lgb

        cls.check_task(cls.name, task)
        start = time.perf_counter()
        features = FeatureSet.fitted(cls.used(modalities), processors, train, "tree", cls.max_text_features)
        if not features.columns:
            raise DataError(f"member '{cls.name}': the columns it reads give no features (empty text?)")
        y, keep = cls.targets(train, task)
        if len(keep) < 2:
            raise DataError(f"member '{cls.name}' needs at least 2 training rows with a label; got {len(keep)}")
        x = features.matrix(train, processors)[keep].astype(np.float64)
        settings = {**default_params(task, len(keep), seed, threads), **(params or {})}
        data = lgb.Dataset(x, y, categorical_feature=[], free_raw_data=True, params={"verbosity": -1})
        valid_sets, callbacks = [], [_deadline(start, time_limit)]
        yv, vkeep = cls.targets(val, task)
        if len(vkeep):
            xv = features.matrix(val, processors)[vkeep].astype(np.float64)
            valid_sets = [lgb.Dataset(xv, yv, reference=data, categorical_feature=[])]
            callbacks.append(lgb.early_stopping(cls.patience, first_metric_only=True, verbose=False))
        booster = lgb.train(
            settings,
            data,
            num_boost_round=cls.max_rounds if valid_sets else 200,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        best = int(booster.best_iteration or booster.current_iteration())
        forest = Forest.from_dump(booster.dump_model(num_iteration=best))
        gain = booster.feature_importance("gain", iteration=best)
        info = {
            "params": settings,
            "best_iteration": best,
            "importance": column_importance(features.columns, gain),
            "library": f"lightgbm {lgb.__version__}",
            "fit_seconds": round(time.perf_counter() - start, 3),
        }
        member = cls(features, forest, task.n_outputs, info)
        member.booster = booster  # not saved: for comparison with LightGBM's own predictions
        return member.eval()

    def spec(self) -> dict[str, Any]:
        return {
            "member": self.name,
            "modalities": self.features.modalities,
            "features": self.features.spec(),
            "forest": self.forest.sizes(),
            "n_outputs": self.n_outputs,
            **self.info,
        }

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any], modalities: list[Modality], processors: dict[str, Processor], task: Task
    ) -> GBMMember:
        cls.check_modalities(cls.name, spec, modalities)
        info = {k: v for k, v in spec.items() if k not in ("member", "modalities", "features", "forest", "n_outputs")}
        member = cls(FeatureSet.from_spec(spec["features"]), Forest(**spec["forest"]), spec["n_outputs"], info)
        return member.eval()


@MEMBERS.register("gbm_tabular")
class GBMTabularMember(GBMMember):
    """The ``gbm`` member on the tabular columns alone (applies when the table has text too)."""

    name = "gbm_tabular"
    kinds = ("tabular",)
    variant_of = "gbm"


def _deadline(start: float, time_limit: float | None) -> Any:
    """A LightGBM callback that stops boosting once ``time_limit`` seconds have passed since ``start``."""
    import lightgbm as lgb

    def callback(env: Any) -> None:
        if time_limit is not None and time.perf_counter() - start > time_limit and env.iteration > 0:
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list or [])

    callback.order = 40  # type: ignore[attr-defined]  # after the early-stopping check (order 30)
    return callback
