"""Fitting as step functions: read → schema → split → processors → prepare → build → train.

``Predictor.fit`` composes them in :func:`fit_pipeline`; pruning's fine-tune (:func:`fine_tune`), ``compare`` and
tuning reuse the same steps, so there is one training set-up and one split rule (:func:`split_rows`) in polymodal.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from . import warmstart
from .components import check_config
from .config import PolymodalConfig, TrainingConfig
from .data.corruption_augmentation import augmenter_from_config
from .data.dataset import Prepared, make_loader, prepare
from .data.processors import LoadContext, Processor, build_processors
from .data.readers import Table, read_table
from .errors import ConfigError, DataError, RowIssue, SchemaError
from .model import build_model, count_parameters
from .pipeline import (
    Data,
    FittedPipeline,
    Label,
    check_columns,
    check_label_list,
    label_columns,
    label_values,
    labelled_rows,
)
from .presets import PresetChoice, apply_preset
from .schema import (
    Modality,
    Schema,
    check_label_values,
    infer_problem_type,
    infer_schema,
    label_warnings,
    tag_separator_warning,
)
from .tasks import Task, build_task
from .tasks.multitask import MULTITASK, MultiTask
from .threads import threads_for_call, use_threads
from .training import FitResult, fit_model, predict_outputs
from .training.checkpoint import Checkpointing
from .training.seeding import seeded
from .training.tracking import check_logger, flatten

log = logging.getLogger("polymodal")


@dataclass
class FitOutcome:
    """What :func:`fit_pipeline` returns: the fitted pipeline and the pretrained encoders the preset chose."""

    pipeline: FittedPipeline
    preset_report: list[PresetChoice] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ read
def read_labelled(data: Data, label: Label, data_root: str | Path | None, what: str = "training") -> Table:
    """Read ``data`` and keep the rows that have a label."""
    table = read_table(data, data_root)
    return Table(labelled_rows(table.frame, label, what), table.root, table.source)


# ---------------------------------------------------------------------------------------------- schema
def fit_schema(frame: pd.DataFrame, label: Label, cfg: PolymodalConfig) -> Schema:
    """Infer the column kinds (the user's overrides and ignores applied; a group column is never an input)."""
    group = cfg.training.group_column
    if group is not None and group not in frame.columns:
        raise SchemaError(
            f"group column '{group}' (training.group_column) is not in the table; its columns are: "
            f"{', '.join(map(str, frame.columns))}"
        )
    if group is not None and group in label_columns(label):
        raise SchemaError(f"column '{group}' is both a label and training.group_column; choose another group column")
    ignore = cfg.ignore + ([group] if group is not None and group not in cfg.ignore else [])
    schema = infer_schema(frame, label, cfg.columns, ignore)
    if not schema.input_columns():
        raise SchemaError("no usable input columns: every column is the label or ignored")
    return schema


def resolve_task(cfg: PolymodalConfig, labels: pd.Series | pd.DataFrame, schema: Schema) -> Task:
    """Build the task for ``labels`` (the problem type inferred unless configured), its target encoding fitted;
    fills the resolved problem type into ``cfg``. ``labels`` as a DataFrame (several target columns) is a
    multi-task problem."""
    problem_type: str | None
    if isinstance(labels, pd.DataFrame):
        problem_type = check_multitask_type(cfg.task.problem_type)
    elif cfg.task.problem_type == MULTITASK:
        raise ConfigError("problem_type 'multitask' needs several label columns: label=['a', 'b'] (--label a,b)")
    else:
        problem_type = cfg.task.problem_type
        if problem_type is None:
            problem_type, why = infer_problem_type(labels, cfg.task.tag_separator)
            log.info("label '%s': %s (%s)", labels.name, problem_type, why)
            # joined tags may be meant as classes: a warning, not an error (--problem-type multiclass silences it)
            warning = (
                tag_separator_warning(labels, cfg.task.tag_separator)
                if problem_type in ("binary", "multiclass")
                else None
            )
            if warning is not None:
                log.warning("%s", warning)
        if problem_type != "multilabel":
            check_label_values(labels, problem_type)
        for warning in label_warnings(labels, problem_type):
            log.warning("%s", warning)
    if cfg.task.targets and problem_type != MULTITASK:
        raise ConfigError("task.targets is for multi-task models (several label columns); remove it or pass a list")
    cfg.task.problem_type = problem_type  # type: ignore[assignment]
    task = build_task(problem_type, cfg.task)
    task.resolve(cfg, {m.kind for m in schema.modalities()})
    if cfg.training.sampler == "balanced" and not task.stratify:
        raise ConfigError(f"training.sampler: balanced draws classes evenly; a {problem_type} task has no classes")
    task.fit_target(labels)  # type: ignore[arg-type]  # (a multi-task task takes the DataFrame of its targets)
    return task


def check_multitask_type(problem_type: str | None) -> str:
    """The problem type of a list label: multitask; any other configured type is refused with what to do."""
    if problem_type not in (None, MULTITASK):
        raise ConfigError(
            f"problem_type '{problem_type}' is for one label column; with several, set each target's type under "
            "task.targets (e.g. task: {targets: {rating: {problem_type: regression}}}) or leave them inferred"
        )
    return MULTITASK


# ----------------------------------------------------------------------------------------------- split
def split_rows(
    n: int, fraction: float, seed: int, strata: np.ndarray | None = None, groups: np.ndarray | pd.Series | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split row positions ``0..n-1`` into (kept, held-out) sorted arrays, ``fraction`` of the rows held out.

    The one split rule of polymodal (validation in fit, fine-tuning, the test split of ``compare``):
    - ``groups``: rows sharing a group value stay on one side (``GroupShuffleSplit``; ``fraction`` is then the
      share of groups held out);
    - else stratified by ``strata`` (class ids) when every class has at least 2 rows and the held-out part can
      hold one row of each class; plain random otherwise.
    """
    if n < 4:
        raise DataError(f"only {n} labelled rows; at least 4 are needed to train and validate")
    positions = np.arange(n)
    if groups is not None:
        codes = pd.factorize(pd.Series(np.asarray(groups)).astype(str))[0]
        if len(np.unique(codes)) < 2:
            raise DataError(
                "the group column has a single value: rows cannot be split by group",
                hint="Use a column with at least two groups, or no group column.",
            )
        kept, held = next(
            GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(positions, groups=codes)
        )
        return np.sort(kept), np.sort(held)
    strat = None
    if strata is not None:
        counts = np.unique(strata, return_counts=True)[1]
        if counts.min() >= 2 and max(1, round(fraction * n)) >= len(counts):
            strat = strata
    kept, held = train_test_split(positions, test_size=fraction, random_state=seed, stratify=strat)
    return np.sort(kept), np.sort(held)


def validation_split(table: Table, label: Label, task: Task, training: TrainingConfig) -> tuple[Table, Table]:
    """Split a labelled table into training and validation tables (stratified by class, or by group)."""
    frame = table.frame
    strata = task.encode_target(label_values(frame, label)) if task.stratify else None
    groups = frame[training.group_column] if training.group_column is not None else None
    train_pos, val_pos = split_rows(len(frame), training.validation_fraction, training.seed, strata, groups)
    return (
        Table(frame.iloc[train_pos], table.root, table.source),
        Table(frame.iloc[val_pos], table.root, table.source),
    )


# ------------------------------------------------------------------------------------ processors, prepare
def fit_processors(schema: Schema, cfg: PolymodalConfig, train: Table) -> tuple[list[Modality], dict[str, Processor]]:
    """Build one processor per modality and fit it on the training rows only (with ``training.init``, the
    modalities shared with the pre-trained run take its processors' state instead: :mod:`polymodal.warmstart`)."""
    modalities, processors = build_processors(schema, cfg)
    reused = warmstart.reuse_processors(cfg, modalities, processors) if cfg.training.init is not None else set()
    for name, p in processors.items():
        if name not in reused:
            p.fit(train.frame, LoadContext(train.root, cfg.limits))
    return modalities, processors


def prepare_labelled(
    tables: list[tuple[Table, str]],
    label: Label,
    processors: dict[str, Processor],
    task: Task,
    cfg: PolymodalConfig,
    verbose: bool = True,
) -> list[Prepared]:
    """Decode each labelled table with its targets; under ``on_error=fail`` report the problems of all of them
    together, so that one run shows every bad row."""
    out, issues = [], []
    # the decode pool follows training.threads as the training loop does (--threads and the env var act already)
    with use_threads(threads_for_call(cfg.training.threads)):
        for table, what in tables:
            try:
                out.append(
                    prepare(
                        table.frame,
                        processors,
                        LoadContext(table.root, cfg.limits),
                        cfg.on_error,
                        targets=task.encode_target(label_values(table.frame, label)),
                        progress=verbose,
                        what=what,
                    )
                )
            except DataError as e:
                issues += e.issues
    if issues:
        rows = len({i.row for i in issues})
        raise DataError(
            f"{rows} rows have problems that stop training:",
            sorted(issues, key=RowIssue.sort_key),
            hint="Fix or remove these rows, or pass --on-error skip (drop them) or "
            "--on-error missing (treat the bad cells as absent).",
        )
    return out


# ----------------------------------------------------------------------------------------- build, train
def auto_batch_size(n: int) -> int:
    # Tiny tables (a few dozen rows, e.g. the UCR archive's 36-67 training rows) get batches of 16: more, noisier
    # steps per epoch, which they need more than the smoother gradient of a larger batch.
    return 16 if n < TINY_ROWS else 32 if n < 1_000 else 64 if n < 10_000 else 128


#: below this many training rows a table is "tiny": batches of 16 (:func:`auto_batch_size`)
TINY_ROWS = 128

#: optimisation steps that ``auto_epochs`` aims at, between 10 and 30 epochs
AUTO_EPOCH_STEPS = 1_500

#: the fewest optimisation steps of an automatic schedule: at 30 epochs a table under ~400 rows gets fewer, so it
#: gets more epochs (up to :data:`AUTO_MAX_EPOCHS`). Without it a 50-row table trained ~60 steps and stopped
#: below 1-NN DTW on the UCR sets (benchmarks/ucr.py); 400 is the order of steps benchmarks/ucr_small.yaml ran.
AUTO_MIN_STEPS = 400

#: the most epochs of an automatic schedule (the smallest tables, 2 steps per epoch)
AUTO_MAX_EPOCHS = 200

#: patience of the default schedule's 30 epochs; longer schedules keep the same ratio (:func:`auto_patience`)
BASE_PATIENCE = 4


def auto_epochs(n: int, batch_size: int) -> int:
    # Enough optimisation steps for small tables, capped for large ones; early stopping ends most runs sooner.
    # 1,500 steps (AV-digits: 12 epochs of 133 steps). The warm-up + cosine schedule anneals to zero at its end, so
    # a shorter full schedule keeps the accuracy of a longer one: on AV-digits 16 epochs (2,000 steps) gave 0.9931
    # and 12 epochs 0.9922 (benchmarks/avdigits_speed.py measures the default side by side against the baseline).
    # Small tables: at least AUTO_MIN_STEPS steps, however many epochs that takes (up to AUTO_MAX_EPOCHS).
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    epochs = int(min(max(math.ceil(AUTO_EPOCH_STEPS / steps_per_epoch), 10), 30))
    return int(min(max(epochs, math.ceil(AUTO_MIN_STEPS / steps_per_epoch)), AUTO_MAX_EPOCHS))


def auto_patience(epochs: int) -> int:
    """Epochs without validation improvement before stopping, for an automatic schedule of ``epochs``: 4 up to 30
    epochs (the large-table schedule), then the same share of the schedule (a 150-epoch schedule: 20), so that
    the many short epochs of a tiny table are not cut off after a few dozen steps."""
    return int(max(BASE_PATIENCE, math.ceil(epochs * BASE_PATIENCE / 30)))


def resolve_training(training: TrainingConfig, n_train: int) -> None:
    """Fill in the automatic batch size, epoch count and patience for ``n_train`` training rows (in place)."""
    training.batch_size = training.batch_size or auto_batch_size(n_train)
    training.max_epochs = training.max_epochs or auto_epochs(n_train, training.batch_size)
    if training.patience is None:
        training.patience = auto_patience(training.max_epochs)


def build(cfg: PolymodalConfig, modalities: list[Modality], processors: dict[str, Processor], task: Task) -> Any:
    """The network for the resolved config (its initial weights come from the global torch generator: build it
    inside :func:`~polymodal.training.seeding.seeded` for a reproducible model). With ``training.init``, the
    encoders shared with the pre-trained run start from its weights."""
    model = build_model(cfg, modalities, processors, task)
    if cfg.training.init is not None:
        warmstart.init_encoders(cfg, modalities, model)
    return model


def train(
    model: Any,
    task: Task,
    processors: dict[str, Processor],
    train_rows: Prepared,
    val_rows: Prepared,
    val_labels: pd.Series,
    training: TrainingConfig,
    verbose: bool = True,
    callbacks: list[Any] | None = None,
    checkpoint: Checkpointing | None = None,
    hyperparameters: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` in place (Lightning; early stopping on validation, best epoch restored); CPU, eval mode
    after. ``training`` must be resolved (batch size and epochs set). ``callbacks``: extra Lightning callbacks.
    ``checkpoint``: a checkpoint every epoch, and resuming (training/checkpoint.py)."""
    bs = training.batch_size or auto_batch_size(len(train_rows))
    train_loader = make_loader(
        train_rows,
        processors,
        bs,
        True,
        task.target_dtype,
        training.num_workers,
        training.seed,
        training.sampler,
        corruption=augmenter_from_config(processors, training.corruption_augmentation),
    )
    val_loader = make_loader(val_rows, processors, max(bs, 128), False, task.target_dtype, training.num_workers)
    result = fit_model(
        model,
        task,
        train_loader,
        val_loader,
        val_labels,
        training,
        training.max_epochs or 1,
        progress=verbose,
        extra_callbacks=callbacks,
        checkpoint=checkpoint,
        hyperparameters=hyperparameters,
    )
    model.cpu().eval()
    return result


def calibrate(
    model: Any, task: Task, processors: dict[str, Processor], val_rows: Prepared, val_labels: pd.Series
) -> None:
    """Let the task learn its post-processing (:meth:`Task.calibrate`) from the trained model's validation
    outputs. Skipped for tasks that learn nothing there (a generation task would decode the split for nothing)."""
    if type(task).calibrate is Task.calibrate or (isinstance(task, MultiTask) and not task.calibrates()):
        return
    loader = make_loader(val_rows, processors, 256, False, task.target_dtype)
    task.calibrate(predict_outputs(model, loader, task), val_labels)


# ------------------------------------------------------------------------------------------- composed
def fit_pipeline(
    data: Data,
    label: Label,
    config: PolymodalConfig,
    *,
    tuning_data: Data | None = None,
    preset: str | None = None,
    verbose: bool = True,
    callbacks: list[Any] | None = None,
    checkpoint: Checkpointing | None = None,
) -> FitOutcome:
    """Fit a pipeline on ``data``: every step above, in order. ``config`` is not modified.

    ``tuning_data`` (optional): a labelled table used for validation instead of a split of ``data``.
    ``callbacks`` (optional): extra Lightning callbacks for the training loop (tuning prunes trials with one).
    ``checkpoint`` (optional): a checkpoint at every epoch end, resumed from when it says so (the data pipeline is
    deterministic given config and data, so it is run again and only the training state is restored).
    """
    cfg = config.model_copy(deep=True)  # resolved values go here; the caller's config stays as given
    if cfg.ensemble is not None:  # an ensemble run's config.yaml given as the config: its members are not trained here
        log.warning(
            "the config's ensemble section is ignored: this fit trains one network (--preset quality fits an ensemble)"
        )
        cfg.ensemble = None
    check_config(cfg)
    check_logger(cfg.training)
    check_label_list(label)
    start = time.perf_counter()
    table = read_labelled(data, label, cfg.data_root)
    schema = fit_schema(table.frame, label, cfg)
    preset_report = apply_preset(cfg, preset, {m.kind for m in schema.modalities()})
    task = resolve_task(cfg, label_values(table.frame, label), schema)
    if tuning_data is None:
        train_t, val_t = validation_split(table, label, task, cfg.training)
    else:
        train_t, val_t = table, read_labelled(tuning_data, label, cfg.data_root, "tuning")
        check_columns(val_t.frame, schema)
    modalities, processors = fit_processors(schema, cfg, train_t)
    train_rows, val_rows = prepare_labelled(
        [(train_t, "training rows"), (val_t, "validation rows")], label, processors, task, cfg, verbose
    )
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise DataError(
            f"not enough usable rows to train: {len(train_rows)} training and {len(val_rows)} validation rows"
        )
    resolve_training(cfg.training, len(train_rows))
    val_labels = label_values(val_t.frame, label).iloc[val_rows.rows].reset_index(drop=True)
    with seeded(cfg.training.seed):  # the same seed and data give the same model; the caller's RNGs are untouched
        model = build(cfg, modalities, processors, task)
        log.info(
            "training on %d rows, validating on %d; modalities: %s; %s parameters",
            len(train_rows),
            len(val_rows),
            ", ".join(f"{m.name} ({m.kind})" for m in modalities),
            f"{count_parameters(model):,}",
        )
        result = train(
            model,
            task,
            processors,
            train_rows,
            val_rows,
            val_labels,
            cfg.training,
            verbose,
            callbacks,
            checkpoint,
            hyperparameters=flatten(cfg.model_dump(mode="json")),
        )
        calibrate(model, task, processors, val_rows, val_labels)
    result.fit_seconds = round(time.perf_counter() - start, 3)
    pipeline = FittedPipeline(label, cfg, schema, modalities, processors, task, model, result, verbose)
    return FitOutcome(pipeline, preset_report)


def fine_tune(
    pipeline: FittedPipeline, data: Data, epochs: int, data_root: str | Path | None = None, lr_scale: float = 0.1
) -> FitResult:
    """Train a fitted pipeline's network ``epochs`` more epochs on a labelled table, split for validation as
    :func:`fit_pipeline` splits, at ``lr_scale`` times the training learning rate with no warm-up (pruning's
    masks keep pruned weights at zero). The best validation epoch is kept; the task's calibration is then fitted
    again on the new network's validation outputs. An ensemble is refused: its members were trained apart and its
    weights selected on validation."""
    cfg = pipeline.config
    if cfg.ensemble is not None:
        raise ConfigError(
            "fine-tuning trains one network, and this run is an ensemble (the quality preset); prune it without "
            "fine-tuning, or fit it again"
        )
    table = read_labelled(data, pipeline.label, data_root if data_root is not None else cfg.data_root, "fine-tuning")
    check_columns(table.frame, pipeline.schema)
    train_t, val_t = validation_split(table, pipeline.label, pipeline.task, cfg.training)
    train_rows, val_rows = prepare_labelled(
        [(train_t, "training rows"), (val_t, "validation rows")],
        pipeline.label,
        pipeline.processors,
        pipeline.task,
        cfg,
        pipeline.verbose,
    )
    training = cfg.training.model_copy()
    training.max_epochs = epochs
    training.learning_rate = training.learning_rate * lr_scale
    training.warmup_fraction = 0.0
    val_labels = label_values(val_t.frame, pipeline.label).iloc[val_rows.rows].reset_index(drop=True)
    with seeded(training.seed):
        result = train(
            pipeline.model,
            pipeline.task,
            pipeline.processors,
            train_rows,
            val_rows,
            val_labels,
            training,
            pipeline.verbose,
        )
        # The network changed: what was learned from its old validation outputs (temperature, threshold) is redone.
        calibrate(pipeline.model, pipeline.task, pipeline.processors, val_rows, val_labels)
    return result
