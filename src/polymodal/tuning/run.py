"""``tune``: an Optuna study over a search space of configs, within a time limit; the best trial saved as a run.

Every trial trains with :func:`polymodal.fitting.fit_pipeline` on the same training and validation split (split
once, by :func:`polymodal.fitting.validation_split` with the config's seed), so that the scores of all trials, and of
trials run by other processes on the same study, are comparable. A trial's score is its best validation value of
the task's monitored metric (``val_accuracy``, ``val_rmse``, ...); the pruning callback reports that metric after
every validation epoch and stops a trial the median pruner finds worse than the earlier ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import optuna
import pandas as pd
from optuna.trial import TrialState

from ..components import check_config
from ..config import PolymodalConfig, encoder_key
from ..data.progress import Progress, live_bars
from ..errors import ConfigError, PolymodalError, TuningError
from ..fitting import fit_pipeline, fit_schema, read_labelled, resolve_task, validation_split
from ..io import atomic_file
from ..params import TASK_PARAMS
from ..pipeline import Data, FittedPipeline, check_columns
from ..presets import PRESETS
from ..training.distributed import check_one_process
from .leaderboard import leaderboard, write_outputs
from .pruning import PruningCallback
from .space import SearchSpace, SpaceFile, apply_values, check_space, load_space, resolve_space
from .study import counted_trials, fail_stale_trials, heartbeat, open_study, worker_lock

log = logging.getLogger("polymodal")

__all__ = ["TuneResult", "tune"]

BEST = "best"
#: This many failed trials in a row end the run: the space (or the data) is broken, not unlucky.
MAX_FAILURES_IN_A_ROW = 5

SpaceSpec = SearchSpace | SpaceFile | Mapping[str, Any] | str | Path | None


@dataclass
class TuneResult:
    """What :func:`tune` found: the study's best trial (over every run and process of the study so far)."""

    #: the validation metric compared, e.g. ``val_accuracy``
    monitor: str
    #: "maximize" or "minimize"
    direction: str
    best_trial: int
    best_value: float
    #: the searched parameters of the best trial (config path → value)
    best_params: dict[str, Any]
    #: one row per trial, best first (as leaderboard.csv)
    leaderboard: pd.DataFrame
    #: the best trial's fitted pipeline (as saved in ``<out>/best``)
    pipeline: FittedPipeline
    #: the output folder (None: the study was kept in memory)
    out: Path | None = None
    #: trials started by this call
    trials_run: int = 0
    #: why this call stopped: "trials" (the budget of trials is reached) or "time limit"
    stopped_by: str = "time limit"
    space: SearchSpace = field(default_factory=SearchSpace)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``<out>/tune.json`` holds)."""
        states = self.leaderboard["state"].value_counts().to_dict() if not self.leaderboard.empty else {}
        return {
            "monitor": self.monitor,
            "direction": self.direction,
            "best_trial": self.best_trial,
            "best_value": self.best_value,
            "best_params": self.best_params,
            "trials": {str(k): int(v) for k, v in states.items()},
            "space": self.space.describe(),
        }


def tune(
    data: Data,
    label: str | list[str],
    config: PolymodalConfig | dict[str, Any] | str | Path | None = None,
    *,
    time_limit: float,
    trials: int | None = None,
    space: SpaceSpec = None,
    out: str | Path | None = None,
    tuning_data: Data | None = None,
    preset: str | None = None,
    prune: bool = True,
    verbose: bool = True,
) -> TuneResult:
    """Search ``space`` for the config that scores best on validation; return the best trial's fitted pipeline.

    Args:
        data: the labelled table (split once into training and validation rows, as ``fit`` splits it).
        label: the target column (one: multi-task labels are not tuned).
        config: the base config; each trial applies its sampled values to it.
        time_limit: seconds for the whole call: no trial starts after it, and each trial's training is limited to
            the time left (``training.time_limit``; decoding the table is not counted).
        trials: the number of trials of the study at most, counting those of earlier runs on the same ``out``.
        space: a :class:`SearchSpace`, a :class:`SpaceFile` or its mapping, or a YAML file (see
            :func:`polymodal.tuning.space.load_space`); None = the space generated from the config.
        out: the study's folder: ``study.journal`` (the study; the same command resumes it, several processes can
            share it), ``study.log``, ``leaderboard.csv/.md``, ``tune.png``, ``tune.json`` and ``best/`` (the best
            trial's run directory). None: the study is kept in memory and nothing is written.
        tuning_data: a labelled validation table instead of a split of ``data``.
        preset: as for ``fit``, applied to every trial.
        prune: stop trials the median pruner finds worse than the earlier ones at the same epoch.
        verbose: one log line per trial and a bar on a terminal.
    """
    if not isinstance(label, str):
        raise ConfigError(
            f"tune takes one label, got {label!r}; tune each target on its own (multi-task models are not tuned)"
        )
    if not time_limit or time_limit <= 0:
        raise ConfigError(f"the time limit must be a positive number of seconds, got {time_limit!r}")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    if trials is not None and trials < 1:
        raise ConfigError(f"trials must be at least 1, got {trials!r}")
    with _quiet_optuna():
        return _tune(data, label, config, time_limit, trials, space, out, tuning_data, preset, prune, verbose)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every trial at INFO on its own handler; polymodal logs its own line per trial. Raised to
    WARNING for the call only: the level belongs to the application (as Lightning's in training.fit)."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _tune(
    data: Data,
    label: str,
    config: Any,
    time_limit: float,
    trials: int | None,
    space: SpaceSpec,
    out: str | Path | None,
    tuning_data: Data | None,
    preset: str | None,
    prune: bool,
    verbose: bool,
) -> TuneResult:
    deadline = time.monotonic() + time_limit
    cfg = PolymodalConfig.from_any(config)
    check_config(cfg)
    check_one_process(cfg.training, "tune")
    search = _space(space, cfg)  # every path and range checked before the table is read
    out_dir = Path(out) if out is not None else None

    # The split every trial shares.
    table = read_labelled(data, label, cfg.data_root)
    schema = fit_schema(table.frame, label, cfg)
    resolved = cfg.model_copy(deep=True)
    task = resolve_task(resolved, table.frame[label], schema)
    if tuning_data is None:
        train_t, val_t = validation_split(table, label, task, resolved.training)
    else:
        train_t, val_t = table, read_labelled(tuning_data, label, cfg.data_root, "tuning")
        check_columns(val_t.frame, schema)
    fused = TASK_PARAMS.get(str(resolved.task.problem_type)).architecture == "fused"
    search = _for_table(search, [encoder_key(cfg, m) for m in schema.modalities()], fused)
    metric, mode = task.monitor
    monitor = f"val_{metric}"
    direction: Literal["maximize", "minimize"] = "maximize" if mode == "max" else "minimize"

    study = open_study(
        out_dir,
        direction=direction,
        seed=cfg.training.seed,
        prune=prune,
        attrs={"label": label, "monitor": monitor},
    )
    fail_stale_trials(study)
    if not study.trials:
        baseline = search.defaults(cfg)
        if baseline:  # the user's own config is trial 0: tuning never ends below it on validation
            study.enqueue_trial(baseline)
    if verbose:
        log.info("tuning %d parameters for %s: %s", len(search.params), monitor, "; ".join(search.describe()))

    runner = _Runner(study, search, cfg, label, monitor, out_dir, preset, verbose)
    bar = Progress(
        trials or max(1, round(time_limit)),
        "tuning",
        "trial" if trials else "s",
        enabled=verbose and live_bars(),
        min_bar=1,
    )
    started = time.monotonic()
    stopped_by = "time limit"
    try:
        while True:
            fail_stale_trials(study)
            if trials is not None and counted_trials(study) >= trials:
                stopped_by = "trials"
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            runner.run_trial(train_t, val_t, left)
            bar.update(counted_trials(study) if trials else round(time.monotonic() - started))
            if runner.best_note:
                bar.set_postfix_str(runner.best_note)
    finally:
        bar.close()
        if out_dir is not None:
            with worker_lock(out_dir):
                write_outputs(study, monitor, out_dir, importances=True)
    return runner.result(stopped_by)


def _space(space: SpaceSpec, cfg: PolymodalConfig) -> SearchSpace:
    if isinstance(space, SearchSpace):
        check_space(space, cfg)
        return space
    if isinstance(space, (SpaceFile, Mapping)):
        return resolve_space(space, cfg)
    return load_space(space, cfg)


def _for_table(space: SearchSpace, keys: list[str], fused: bool) -> SearchSpace:
    """The entries that mean something for this table: encoders its modalities use; modality dropout only with
    several modalities; the fusion's only for a task that fuses (generation decodes from the tokens instead)."""
    kept = {}
    for path, dist in space.params.items():
        parts = path.split(".")
        if parts[0] == "fusion" and not fused:
            continue
        if parts[0] == "encoders" and parts[1] not in keys:
            log.debug("search space: %s left out (no modality of this table uses encoders.%s)", path, parts[1])
            continue
        if path == "training.modality_dropout" and len(keys) < 2:
            continue
        kept[path] = dist
    return SearchSpace(params=kept)


class _Runner:
    """Runs trials one after another and keeps this process's best fitted pipeline."""

    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace,
        cfg: PolymodalConfig,
        label: str,
        monitor: str,
        out: Path | None,
        preset: str | None,
        verbose: bool,
    ) -> None:
        self.study, self.space, self.cfg, self.label, self.monitor = study, space, cfg, label, monitor
        self.out, self.preset, self.verbose = out, preset, verbose
        self.best: tuple[int, FittedPipeline] | None = None
        self.trials_run = 0
        self.failures = 0
        self.best_note = ""

    def run_trial(self, train: Any, val: Any, seconds_left: float) -> None:
        trial = self.study.ask()
        self.trials_run += 1
        start = time.monotonic()
        state, value, pipeline, note = TrialState.FAIL, None, None, ""
        try:
            values = self.space.suggest(trial)
            data = apply_values(self.cfg.to_dict(), values)
            limit = data["training"].get("time_limit")
            data["training"]["time_limit"] = min(limit, seconds_left) if limit else seconds_left
            if data["training"].get("logger", "none") != "none":  # one tracked run per trial (training.logger)
                data["training"]["run_name"] = f"{data['training'].get('run_name') or 'tune'}-trial{trial.number}"
            trial_cfg = PolymodalConfig.from_any(data)
            callback = PruningCallback(trial, self.monitor)
            with heartbeat(trial):
                outcome = fit_pipeline(
                    train,
                    self.label,
                    trial_cfg,
                    tuning_data=val,
                    preset=self.preset,
                    verbose=False,
                    callbacks=[callback],
                )
            pipeline = outcome.pipeline
            r = pipeline.fit_result
            assert r is not None, "fit_pipeline records its result"
            trial.set_user_attr("best_epoch", r.best_epoch + 1)
            trial.set_user_attr("epochs", r.epochs_run)
            value = r.validation.get(self.monitor)
            if callback.pruned:
                state, note = TrialState.PRUNED, f"pruned after epoch {callback.pruned_at + 1}"  # type: ignore[operator]
            elif value is None:
                note = "no validation epoch completed (too little time left?)"
            else:
                state = TrialState.COMPLETE
            if r.time_limited and state == TrialState.COMPLETE:
                note = "training stopped by the time limit"
        except KeyboardInterrupt:
            trial.set_user_attr("stale", True)  # stopped by the user: not counted, as a killed trial is not
            self._finish(trial, TrialState.FAIL, None, "interrupted")
            raise
        except (PolymodalError, RuntimeError, ValueError) as e:
            # A sampled combination the network cannot be built or trained with fails this trial, not the study.
            note = f"{type(e).__name__}: {e}"[:500]
        self._finish(trial, state, value, note)
        seconds = time.monotonic() - start
        if state == TrialState.FAIL:
            self.failures += 1
            log.warning("trial %d failed after %.0f s: %s", trial.number, seconds, note)
            if self.failures >= MAX_FAILURES_IN_A_ROW:
                raise TuningError(
                    f"{self.failures} trials in a row failed; the last one: {note}",
                    hint="Check the search space (--space) and the config: a value the network cannot be built "
                    "with fails every trial that samples it.",
                )
            return
        self.failures = 0
        with worker_lock(self.out):
            best = self._best()
            if state == TrialState.COMPLETE and best is not None and best.number == trial.number:
                assert pipeline is not None
                self.best = (trial.number, pipeline)
                if self.out is not None:
                    pipeline.save(self.out / BEST, overwrite=True)
            if self.out is not None:
                write_outputs(self.study, self.monitor, self.out, importances=False)
                self._log_line(trial.number, state, value, seconds, trial.params, note)
        if best is not None:
            self.best_note = f"best {best.value:.4g} (trial {best.number})"
        if self.verbose:
            shown = "-" if value is None else f"{value:.4g}"
            log.info(
                "trial %d %s: %s %s in %.0f s; %s; %s",
                trial.number,
                state.name.lower(),
                self.monitor,
                shown,
                seconds,
                self.best_note or "no completed trial yet",
                ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items()),
            )

    def _finish(self, trial: optuna.Trial, state: TrialState, value: float | None, note: str) -> None:
        if note:
            trial.set_user_attr("note" if state != TrialState.FAIL else "error", note)
        if state == TrialState.COMPLETE:
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=state)

    def _best(self) -> optuna.trial.FrozenTrial | None:
        try:
            return self.study.best_trial
        except ValueError:  # no completed trial yet
            return None

    def _log_line(
        self, number: int, state: TrialState, value: float | None, seconds: float, params: dict[str, Any], note: str
    ) -> None:
        assert self.out is not None
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = {
            "time": stamp,
            "trial": number,
            "state": state.name.lower(),
            self.monitor: value,
            "seconds": round(seconds, 1),
            "params": params,
            **({"note": note} if note else {}),
        }
        with open(self.out / "study.log", "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def result(self, stopped_by: str) -> TuneResult:
        best = self._best()
        if best is None or best.value is None:
            raise TuningError(
                "no trial completed"
                + (f" ({self.trials_run} started by this run)" if self.trials_run else " (none could start)"),
                hint="Give the study more time (--time-limit) or fewer epochs per trial (training.max_epochs).",
            )
        if self.best is not None and self.best[0] == best.number:
            pipeline = self.best[1]
        elif self.out is not None and (self.out / BEST).is_dir():
            pipeline = FittedPipeline.load(self.out / BEST, verbose=self.verbose)
        else:  # pragma: no cover - the best trial of an in-memory study was run here
            raise TuningError(f"the best trial ({best.number}) has no saved model")
        result = TuneResult(
            monitor=self.monitor,
            direction=self.study.direction.name.lower(),
            best_trial=best.number,
            best_value=float(best.value),
            best_params=dict(best.params),
            leaderboard=leaderboard(self.study, self.monitor),
            pipeline=pipeline,
            out=self.out,
            trials_run=self.trials_run,
            stopped_by=stopped_by,
            space=self.space,
        )
        if self.out is not None:
            with worker_lock(self.out), atomic_file(self.out / "tune.json", "w", encoding="utf-8") as f:
                json.dump(result.summary(), f, indent=2)
                f.write("\n")
        return result


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
