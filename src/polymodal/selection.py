"""Fitting an ensemble (the ``quality`` preset): train members on one split, select weights greedily, calibrate.

:func:`fit_ensemble` runs the fitting steps of :mod:`polymodal.fitting` once (read, schema, task, split, processors,
decode), then trains every member of the plan on the same decoded rows (:func:`plan_members`): the fused network with
the config's fusion, every applicable classical member (:data:`polymodal.members.MEMBERS`), one network per modality,
and fused networks with other fusions and seeds. A member that raises is left out with a warning; with a time limit,
each member gets a share of what is left (a classical member, which trains in seconds, a tenth of a network's) and
members whose share is too small are skipped.

Weights come from greedy ensemble selection with replacement (Caruana et al., 2004, "Ensemble selection from
libraries of models"): start from the best single member on validation, then repeatedly add (again) the member that
improves the validation score most, for at most ``rounds`` rounds, stopping when nothing improves it. The score is the
task's monitor metric (accuracy, RMSE) with ties broken by log-loss for classification: accuracy alone moves in steps
of one row, so most additions would tie, and log-loss tells apart mixtures that predict the same classes with better
probabilities. Since the best member is the start and a round is only taken when the score improves, the ensemble's
validation monitor metric is never below the best member's. Deterministic: ties go to the member planned first.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import fitting
from .components import check_config
from .config import EnsembleConfig, EnsembleMemberConfig, FusionConfig, PolymodalConfig
from .data.dataset import Prepared, make_loader
from .data.processors import Processor
from .ensemble import EnsembleModel, combine, member_modalities, outputs_of
from .ensemble.model import COMBINERS, combiner_for, member_config
from .errors import DataError, PolymodalError
from .fitting import FitOutcome
from .members import MEMBERS
from .model import count_parameters
from .pipeline import Data, FittedPipeline, Label, check_columns, label_values
from .presets import apply_preset
from .schema import Modality
from .tasks import Task
from .training import FitResult
from .training.checkpoint import Checkpointing
from .training.seeding import seeded
from .training.tracking import flatten

log = logging.getLogger("polymodal")

ENSEMBLE_ROW = "ensemble"


@dataclass
class QualityPlan:
    """Which members the quality preset trains (in this order) and how weights are selected.

    Attributes:
        fusions: fused networks with these fusions besides the config's own (one each; a name equal to the
            config's fusion is not trained twice).
        extra_seeds: more fused networks with the config's fusion, seeded ``seed + 1``, ``seed + 2``, ...
        classical: train every registered classical member that applies to the table and task.
        single_modality: train one network per modality (when the table has more than one).
        rounds: greedy selection rounds at most (each adds one member, with replacement).
        min_member_seconds: with a time limit, a member whose share of the remaining time is below this is skipped
            (the first member always trains).
    """

    fusions: tuple[str, ...] = ("late",)
    extra_seeds: int = 0
    classical: bool = True
    single_modality: bool = True
    rounds: int = 25
    min_member_seconds: float = 5.0


#: Default ``fit`` (no preset) on a table of at most :data:`AUTO_MAX_ROWS` training rows: the fused network plus the
#: classical members, weighted by greedy selection (they cost seconds; networks per modality and other fusions,
#: which multiply the training time, are the quality preset's). On larger tables, or for problems an ensemble cannot
#: combine (generation, multi-label, multi-task), the fused network alone.
AUTO_PLAN = QualityPlan(fusions=(), single_modality=False, classical=True)
AUTO_MAX_ROWS = 5_000


def _safe(name: str) -> str:
    # member names are module keys (no dots) and file-name friendly
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "member"


def plan_members(
    cfg: PolymodalConfig, modalities: list[Modality], task: Task, plan: QualityPlan
) -> list[EnsembleMemberConfig]:
    """The members to train, most useful first (a tight time limit trains the first ones only)."""
    seed, fusion = cfg.training.seed, cfg.fusion
    out = [EnsembleMemberConfig(name=f"fused_{_safe(fusion.name)}", fusion=fusion, seed=seed)]
    if plan.classical:
        for name, cls in MEMBERS.items():
            if cls.applies(modalities, task):
                out.append(EnsembleMemberConfig(name=_safe(name), kind=name, seed=seed))
    if plan.single_modality and len(modalities) > 1:
        for m in modalities:
            out.append(EnsembleMemberConfig(name=f"only_{_safe(m.name)}", modalities=[m.name], seed=seed))
    for other in plan.fusions:
        if other != fusion.name:
            common = {"dim": fusion.dim, "dropout": fusion.dropout}
            out.append(
                EnsembleMemberConfig(name=f"fused_{_safe(other)}", fusion=FusionConfig(name=other, **common), seed=seed)
            )
    for k in range(1, plan.extra_seeds + 1):
        out.append(
            EnsembleMemberConfig(name=f"fused_{_safe(fusion.name)}_seed{seed + k}", fusion=fusion, seed=seed + k)
        )
    seen: set[str] = set()
    for spec in out:  # two modalities whose names differ only in punctuation
        while spec.name in seen or spec.name == ENSEMBLE_ROW:
            spec.name += "_"
        seen.add(spec.name)
    return out


# ------------------------------------------------------------------------------------------------- selection
@dataclass
class Selection:
    """The result of greedy selection: member → weight (summing to 1), how often each was picked, and the
    ensemble's validation metrics after each round (the first: the best single member)."""

    weights: dict[str, float]
    counts: dict[str, int]
    metrics: dict[str, float]
    trace: list[tuple[str, float]] = field(default_factory=list)


def _key(metrics: dict[str, float], task: Task) -> tuple[float, float]:
    """Higher is better: the monitor metric (signed), then minus log-loss when the task reports one."""
    name, mode = task.monitor
    main = float(metrics.get(name, float("nan")))
    main = -main if mode == "min" else main
    tie = -float(metrics.get("log_loss", 0.0))
    return (main if math.isfinite(main) else -math.inf, tie if math.isfinite(tie) else -math.inf)


def greedy_selection(outputs: dict[str, np.ndarray], labels: pd.Series, task: Task, rounds: int = 25) -> Selection:
    """Greedy ensemble selection with replacement (see the module docstring) on the members' validation
    ``outputs`` (member → [rows, task.n_outputs]) against ``labels``."""
    if not outputs:
        raise PolymodalError("no member outputs to select from")
    combiner = combiner_for(task.problem_type)
    names = list(outputs)
    tensors = {n: torch.from_numpy(np.asarray(o, dtype=np.float32)) for n, o in outputs.items()}

    def score(counts: dict[str, int]) -> tuple[tuple[float, float], dict[str, float]]:
        used = [n for n in names if counts.get(n, 0) > 0]
        total = sum(counts[n] for n in used)
        combined = combine([tensors[n] for n in used], [counts[n] / total for n in used], combiner).numpy()
        metrics = task.metrics(labels, combined)
        return _key(metrics, task), metrics

    singles = {n: score({n: 1}) for n in names}
    first = max(names, key=lambda n: singles[n][0])  # max keeps the first of equals: the member planned first
    counts = {first: 1}
    best_key, best_metrics = singles[first]
    trace = [(first, best_metrics.get(task.monitor[0], float("nan")))]
    for _ in range(max(0, rounds - 1)):
        candidate, cand_key, cand_metrics = None, best_key, best_metrics
        for n in names:
            k, m = score({**counts, n: counts.get(n, 0) + 1})
            if k > cand_key:
                candidate, cand_key, cand_metrics = n, k, m
        if candidate is None:
            break
        counts[candidate] = counts.get(candidate, 0) + 1
        best_key, best_metrics = cand_key, cand_metrics
        trace.append((candidate, best_metrics.get(task.monitor[0], float("nan"))))
    total = sum(counts.values())
    return Selection({n: counts.get(n, 0) / total for n in names}, counts, best_metrics, trace)


# ----------------------------------------------------------------------------------------------- members
@dataclass
class _Trained:
    spec: EnsembleMemberConfig
    module: torch.nn.Module
    val_outputs: np.ndarray
    metrics: dict[str, float]
    seconds: float
    epochs: int = 0
    time_limited: bool = False
    result: FitResult | None = None


def _train_member(
    spec: EnsembleMemberConfig,
    cfg: PolymodalConfig,
    modalities: list[Modality],
    processors: dict[str, Processor],
    task: Task,
    train_rows: Prepared,
    val_rows: Prepared,
    val_labels: pd.Series,
    time_limit: float | None,
    verbose: bool,
    callbacks: list[Any] | None,
) -> _Trained:
    start = time.perf_counter()
    mods = member_modalities(spec, modalities)
    procs = {m.name: processors[m.name] for m in mods}
    epochs, limited, result = 0, False, None
    if spec.kind == "network":
        mcfg = member_config(cfg, spec)
        mcfg.training.time_limit = time_limit
        if len(mods) == 1:  # hiding the only modality would leave nothing to learn from
            mcfg.training.modality_dropout = 0.0
        with seeded(spec.seed):
            module = fitting.build(mcfg, mods, procs, task)
            result = fitting.train(
                module,
                task,
                procs,
                train_rows,
                val_rows,
                val_labels,
                mcfg.training,
                verbose,
                callbacks,
                hyperparameters=flatten(mcfg.model_dump(mode="json")),  # one tracked run per member (training.logger)
            )
        epochs, limited = result.epochs_run, result.time_limited
    else:
        with seeded(spec.seed):
            module = MEMBERS.get(spec.kind).fit(
                train_rows, val_rows, mods, procs, task, seed=spec.seed, time_limit=time_limit
            )
        spec.spec = module.spec()
        module.eval()
    loader = make_loader(val_rows, procs, 256, False, task.target_dtype)
    val_outputs = outputs_of(module, loader)
    metrics = task.metrics(val_labels, val_outputs)
    return _Trained(spec, module, val_outputs, metrics, time.perf_counter() - start, epochs, limited, result)


def _row(spec: EnsembleMemberConfig, cfg: PolymodalConfig, status: str) -> dict[str, Any]:
    fusion = spec.fusion.name if spec.fusion is not None else (cfg.fusion.name if spec.kind == "network" else None)
    return {
        "member": spec.name,
        "kind": spec.kind,
        "modalities": "+".join(spec.modalities) or "all",
        "fusion": fusion,
        "seed": spec.seed,
        "status": status,
    }


def _one_network(task: Task, modalities: list[Modality], n_train: int) -> str | None:
    """Why default ``fit`` trains the network alone on this table (None: the classical members join it)."""
    if task.problem_type not in COMBINERS:
        return f"a {task.problem_type} model is not an ensemble"
    if n_train > AUTO_MAX_ROWS:
        return f"{n_train:,} training rows (classical members join it up to {AUTO_MAX_ROWS:,})"
    if not any(cls.applies(modalities, task) for _, cls in MEMBERS.items()):
        return (
            "no classical member learns from these columns (they need numeric, category, text or time-series columns)"
        )
    return None


def _cost(spec: EnsembleMemberConfig) -> float:
    """A member's share of a time limit, relative to a network's."""
    return 1.0 if spec.kind == "network" else 0.1


# ---------------------------------------------------------------------------------------------- composed
def fit_ensemble(
    data: Data,
    label: Label,
    config: PolymodalConfig,
    plan: QualityPlan | None = None,
    *,
    tuning_data: Data | None = None,
    preset: str | None = "quality",
    verbose: bool = True,
    callbacks: list[Any] | None = None,
    auto: bool = False,
    checkpoint: Checkpointing | None = None,
) -> FitOutcome:
    """Fit a weighted ensemble on ``data`` (see the module docstring); ``config`` is not modified.

    ``config.training.time_limit`` (optional) is the training budget shared by the members (reading and decoding
    the table before it are not counted, as for one network). Returns the pipeline (its ``model`` an :class:`~polymodal.ensemble.EnsembleModel`, its config's
    ``ensemble`` section naming the members and weights, its ``leaderboard`` the members' validation scores).

    ``auto`` (default ``fit``, see :data:`AUTO_PLAN`): past :data:`AUTO_MAX_ROWS` training rows, for a problem no
    ensemble combines, or when no classical member applies, this is :func:`~polymodal.fitting.fit_pipeline`
    (nothing decoded twice); and when selection puts all the weight on the fused network, the pipeline is that
    network (no ``ensemble`` section: integrated gradients, pruning and fine-tuning work on it as on any network),
    its ``leaderboard`` still listing the members it beat on validation.
    """
    plan = plan or QualityPlan()
    cfg = config.model_copy(deep=True)
    cfg.ensemble = None  # (a saved ensemble's config.yaml as the config) the members are planned afresh
    check_config(cfg)
    start = time.perf_counter()
    table = fitting.read_labelled(data, label, cfg.data_root)
    schema = fitting.fit_schema(table.frame, label, cfg)
    preset_report = apply_preset(cfg, preset, {m.kind for m in schema.modalities()})
    task = fitting.resolve_task(cfg, table.frame[label], schema)
    if not auto:
        combiner_for(task.problem_type)  # a problem type with no combiner fails before the decoding
    if tuning_data is None:
        train_t, val_t = fitting.validation_split(table, label, task, cfg.training)
    else:
        train_t, val_t = table, fitting.read_labelled(tuning_data, label, cfg.data_root, "tuning")
        check_columns(val_t.frame, schema)
    alone = _one_network(task, schema.modalities(), len(train_t.frame)) if auto else None
    if alone is not None:  # nothing decoded yet: the plain fit, as if no preset had ever been considered
        log.info("one network: %s", alone)
        return fitting.fit_pipeline(
            data,
            label,
            config,
            tuning_data=tuning_data,
            preset=preset,
            verbose=verbose,
            callbacks=callbacks,
            checkpoint=checkpoint,
        )
    if checkpoint is not None:  # several members, each trained apart: no one training state to resume
        log.info("this fit trains several members: no checkpoints are written (one network alone: --preset fast)")
    modalities, processors = fitting.fit_processors(schema, cfg, train_t)
    train_rows, val_rows = fitting.prepare_labelled(
        [(train_t, "training rows"), (val_t, "validation rows")], label, processors, task, cfg, verbose
    )
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise DataError(
            f"not enough usable rows to train: {len(train_rows)} training and {len(val_rows)} validation rows"
        )
    fitting.resolve_training(cfg.training, len(train_rows))
    val_labels = label_values(val_t.frame, label).iloc[val_rows.rows].reset_index(drop=True)
    budget = cfg.training.time_limit
    budget_start = time.perf_counter()
    specs = plan_members(cfg, modalities, task, plan)
    log.info(
        "%s: %d members planned (%s) on %d training and %d validation rows%s",
        "default fit" if auto else "quality preset",
        len(specs),
        ", ".join(s.name for s in specs),
        len(train_rows),
        len(val_rows),
        f"; time limit {budget:.0f} s" if budget is not None else "",
    )
    trained: list[_Trained] = []
    rows: list[dict[str, Any]] = []
    monitor = task.monitor[0]
    for i, spec in enumerate(specs):
        share = None
        if budget is not None:
            left = budget - (time.perf_counter() - budget_start)
            share = left * _cost(spec) / sum(_cost(s) for s in specs[i:])
            if trained and share < plan.min_member_seconds * _cost(spec):
                log.warning("member %s skipped: the time limit leaves it %.1f s", spec.name, max(share, 0.0))
                rows.append(_row(spec, cfg, "skipped: time limit"))
                continue
            share = max(share, 1.0)
        try:
            t = _train_member(
                spec, cfg, modalities, processors, task, train_rows, val_rows, val_labels, share, verbose, callbacks
            )
        except Exception as e:  # one member's failure (a library error, a bad shape) must not lose the others
            log.warning("member %s failed and is left out: %s: %s", spec.name, type(e).__name__, e)
            rows.append(_row(spec, cfg, f"failed: {type(e).__name__}: {e}"))
            continue
        trained.append(t)
        rows.append(
            {
                **_row(spec, cfg, "ok"),
                "score_val": t.metrics.get(monitor),
                **{f"val_{k}": v for k, v in t.metrics.items()},
                "fit_seconds": round(t.seconds, 3),
                "parameters": count_parameters(t.module),
            }
        )
        log.info("member %s: validation %s %.4f (%.1f s)", spec.name, monitor, t.metrics.get(monitor), t.seconds)
    if not trained:
        raise PolymodalError("every member of the ensemble failed; the warnings above say why")
    chosen = {trained[0].spec.name: 1.0}
    if len(trained) > 1:
        chosen = greedy_selection({t.spec.name: t.val_outputs for t in trained}, val_labels, task, plan.rounds).weights
        log.info(
            "ensemble weights (greedy selection on validation %s): %s",
            monitor,
            ", ".join(f"{n} {w:.3f}" for n, w in chosen.items() if w > 0),
        )
    for r in rows:
        r["weight"] = chosen.get(r["member"], 0.0)
    fused = trained[0] if trained[0].spec is specs[0] else None  # the config's own network, when it trained
    # default fit: a network that won outright is the model (explanations by gradients, pruning and fine-tuning
    # work on it); the quality preset keeps every member, so that its leaderboard scores them all on test
    if auto and fused is not None and [n for n, w in chosen.items() if w > 0] == [fused.spec.name]:
        assert fused.result is not None, "a network member keeps its training result"
        fitting.calibrate(fused.module, task, processors, val_rows, val_labels)
        fused.result.fit_seconds = round(time.perf_counter() - start, 3)
        fused.result.time_limited |= any(r["status"].startswith("skipped") for r in rows)
        pipeline = FittedPipeline(label, cfg, schema, modalities, processors, task, fused.module, fused.result, verbose)
        if len(rows) > 1:
            pipeline.leaderboard = leaderboard_frame(rows, task)
            log.info("the fused network alone is the model: no other member improved on it on validation")
        return FitOutcome(pipeline, preset_report)
    weights = [chosen[t.spec.name] for t in trained]
    cfg.ensemble = EnsembleConfig(members=[t.spec for t in trained], weights=weights)
    model = EnsembleModel({t.spec.name: t.module for t in trained}, weights, combiner_for(task.problem_type))
    model.eval()
    fitting.calibrate(model, task, processors, val_rows, val_labels)  # on the ensemble's outputs, once
    ens_metrics = task.metrics(
        val_labels, outputs_of(model, make_loader(val_rows, processors, 256, False, task.target_dtype))
    )
    log.info("ensemble: validation %s %.4f", monitor, ens_metrics.get(monitor))
    rows.append(
        {
            "member": ENSEMBLE_ROW,
            "kind": ENSEMBLE_ROW,
            "modalities": "all",
            "fusion": None,
            "seed": cfg.training.seed,
            "status": "ok",
            "score_val": ens_metrics.get(monitor),
            **{f"val_{k}": v for k, v in ens_metrics.items()},
            "fit_seconds": None,
            "parameters": count_parameters(model),
            "weight": 1.0,
        }
    )
    fit_seconds = round(time.perf_counter() - start, 3)
    rows[-1]["fit_seconds"] = fit_seconds
    # the epochs and training log are the fused network's (the member a plain fit trains); the validation
    # metrics are the ensemble's
    main = fused.result if fused is not None and fused.result is not None else None
    result = FitResult(
        best_epoch=0 if main is None else main.best_epoch,
        epochs_run=0 if main is None else main.epochs_run,
        fit_seconds=fit_seconds,
        stopped_early=False if main is None else main.stopped_early,
        validation={f"val_{k}": v for k, v in ens_metrics.items()},
        history=[] if main is None else main.history,
        train_seconds=round(sum(t.seconds for t in trained), 3),
        time_limited=any(t.time_limited for t in trained) or any(r["status"].startswith("skipped") for r in rows),
        precision="32-true" if main is None else main.precision,
    )
    pipeline = FittedPipeline(label, cfg, schema, modalities, processors, task, model, result, verbose)
    pipeline.leaderboard = leaderboard_frame(rows, task)
    return FitOutcome(pipeline, preset_report)


def leaderboard_frame(rows: list[dict[str, Any]], task: Task) -> pd.DataFrame:
    """The rows as a table, best validation score first (members that did not train last)."""
    frame = pd.DataFrame(rows)
    order = ["member", "kind", "modalities", "fusion", "seed", "weight", "score_val", "status"]
    frame = frame[[c for c in order if c in frame] + [c for c in frame if c not in order]]
    if "score_val" in frame:
        frame = frame.sort_values("score_val", ascending=task.monitor[1] == "min", na_position="last", kind="stable")
    return frame.reset_index(drop=True)
