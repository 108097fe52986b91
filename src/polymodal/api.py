"""The Predictor: fit / predict / predict_proba / evaluate / save / load, scikit-learn style.

All state is learned in ``fit`` (schema, processors, target encoding, weights) and saved by ``save``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .components import check_config
from .config import DecodingConfig, PolymodalConfig, apply_choices, encoder_choice
from .data.readers import read_table
from .errors import ConfigError, NotFittedError
from .evaluation.robustness import (
    CorruptionSpec,
    RobustnessReport,
    plan_sweep,
    reference_scores,
    resolve_baseline,
    robustness_sweep,
)
from .fitting import check_multitask_type, fit_pipeline
from .model import count_parameters
from .params import TASK_PARAMS
from .pipeline import Data, FittedPipeline, check_label_list
from .prediction import PredictionSummary, predict_to
from .presets import ENSEMBLE_PRESETS, PRESETS, PresetChoice
from .pretraining import pretrain as run_pretrain
from .ranks import is_main_process
from .retrieval import embed as embed_rows
from .retrieval import find, pair_table
from .schema import Modality, Schema
from .search import ApproximateIndex, Hits
from .tasks import Task
from .tasks.generation import GenerationTask
from .tasks.reconstruction import ANOMALY_COLUMN, is_reconstruction, reconstruction_table
from .tasks.retrieval import PAIR_COLUMN, RetrievalTask
from .training import FitResult
from .training.checkpoint import Checkpointing, data_fingerprint
from .zeroshot import DEFAULT_PROMPT, ZeroShotResult, zero_shot

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from matplotlib.figure import Figure

    from .data.processors import Processor
    from .explain import Explanation, ImportanceResult
    from .tuning import SearchSpace, SpaceFile, TuneResult

log = logging.getLogger("polymodal")

__all__ = ["NotFittedError", "Predictor"]

_PARAMS = (
    "label",
    "problem_type",
    "config",
    "data_root",
    "columns",
    "ignore",
    "time_limit",
    "seed",
    "on_error",
    "preset",
    "fusion",
    "encoders",
    "verbose",
    "query",
    "target",
    "init",
)


class Predictor:
    """Train and use a multimodal model on a table.

    A scikit-learn-style estimator: the constructor only stores parameters (:meth:`get_params`,
    :meth:`set_params`, :meth:`clone`); everything learned in :meth:`fit` (schema, processors, target encoding,
    weights) lives in :attr:`pipeline`, a :class:`~polymodal.pipeline.FittedPipeline`, and is saved by :meth:`save`.

    Args:
        label: name of the target column, or a list of target columns: one multi-task model with a head and a loss
            per target (each binary, multiclass or regression; ``config`` ``task.targets`` sets types and loss
            weights; a row with some targets empty trains the others; see docs/USER_GUIDE.md, "Several targets").
            None for ``problem_type="reconstruction"`` (an autoencoder; see docs/USER_GUIDE.md, "Anomaly detection").
        problem_type: "binary", "multiclass", "multilabel" (several tags per row: "a|b", a JSON list or a list;
            see docs/USER_GUIDE.md, "Multi-label classification") or "regression" (inferred from the label when
            None), or "generation": the label is text to write (captions, free-form answers; see
            docs/USER_GUIDE.md, "Generation").
        config: a :class:`PolymodalConfig`, a dict, or a YAML/JSON path.
        data_root: folder that relative file paths resolve against (default: the table's folder).
        columns: column → kind overrides ("image", "audio", "video", "text", "numeric", "category", "ignore").
        ignore: columns to leave out.
        time_limit: seconds of training at most (checked after every step; decoding the table is not counted).
        seed: random seed; the same seed and data give the same model.
        on_error: "fail" (default), "skip" bad rows, or treat bad cells as "missing".
        preset: None (the default: the fused network of from-scratch encoders; on a table of at most 5,000
            training rows the classical members, gradient boosting and linear models, train beside it and join it
            in a weighted ensemble when they improve it on validation), "fast" (the fused network alone),
            "pretrained" (one network with a frozen pretrained encoder for each text/image/audio modality whose
            weights are on this machine; see :mod:`polymodal.presets`) or "quality" (a weighted ensemble of fused
            and single-modality networks and classical learners, selected on validation, within ``time_limit``;
            see :meth:`leaderboard`). Encoders chosen in ``config`` are kept. What was chosen is in
            ``preset_report`` after ``fit``.
        fusion: the fusion method by name, e.g. "late" (``polymodal config schema`` lists them), or a whole
            ``fusion`` config section (a dict with ``name`` and its parameters). Wins over ``config``.
        encoders: kind ("image", "audio", "video", "text", "tabular") or column → encoder name, or a dict with ``name`` and
            the encoder's parameters: ``{"image": "image_cnn", "review": {"name": "text_transformer", "layers": 1}}``.
            Each entry replaces ``config``'s entry under the same key; a column's entry wins over its kind's.
        verbose: show progress: live bars on a terminal, else log lines (per epoch, decoded rows) on the
            "polymodal" logger.
        init: a run directory of :meth:`pretrain` (``polymodal pretrain``), or any run: the encoders of the
            columns this table shares with it (same column, kind and encoder settings; another setting is refused)
            start from its weights and their processors from its fitted state (``training.init``; see
            docs/USER_GUIDE.md, "Self-supervised pre-training").

    Every choice is checked at construction, as the CLI checks it: a misspelt fusion, encoder or parameter raises
    :class:`~polymodal.errors.ConfigError` before any table is read.

    Example:
        >>> p = Predictor(label="label", fusion="late", time_limit=60).fit("train.csv")
        >>> p.evaluate("test.csv")["accuracy"]
        >>> p.leaderboard("test.csv")
    """

    def __init__(
        self,
        label: str | list[str] | None = None,
        *,
        problem_type: str | None = None,
        config: PolymodalConfig | dict[str, Any] | str | Path | None = None,
        data_root: str | Path | None = None,
        columns: dict[str, str] | None = None,
        ignore: list[str] | None = None,
        time_limit: float | None = None,
        seed: int | None = None,
        on_error: str | None = None,
        preset: str | None = None,
        fusion: str | dict[str, Any] | None = None,
        encoders: dict[str, str | dict[str, Any]] | None = None,
        verbose: bool = True,
        query: list[str] | str | None = None,
        target: list[str] | str | None = None,
        init: str | Path | None = None,
    ):
        self._params: dict[str, Any] = {}
        self.pipeline: FittedPipeline | None = None
        self.preset_report: list[PresetChoice] = []
        #: the study summary of the last :meth:`tune` (None before)
        self.tune_result: TuneResult | None = None
        self.set_params(
            label=label,
            problem_type=problem_type,
            config=config,
            data_root=data_root,
            columns=columns,
            ignore=ignore,
            time_limit=time_limit,
            seed=seed,
            on_error=on_error,
            preset=preset,
            fusion=fusion,
            encoders=encoders,
            verbose=verbose,
            query=query,
            target=target,
            init=init,
        )

    # -------------------------------------------------------------------------------------------- params
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters, as given (``deep``: copies, so changing them changes nothing here)."""
        return copy.deepcopy(self._params) if deep else dict(self._params)

    def set_params(self, **params: Any) -> Predictor:
        """Change constructor parameters (checked now, as the constructor checks them); a fitted model is kept
        until the next :meth:`fit`. Returns self."""
        unknown = sorted(set(params) - set(_PARAMS))
        if unknown:
            raise ConfigError(f"unknown Predictor parameter(s): {', '.join(unknown)}; valid: {', '.join(_PARAMS)}")
        merged = {**self._params, **params}
        preset = merged.get("preset")
        if preset is not None and preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
        user_config = _user_config(merged)
        check_config(user_config)  # a misspelt component or parameter fails here, before any table is read
        if user_config.task.problem_type == "retrieval":  # the rows are the pairs: no label column
            if merged.get("label") not in (None, PAIR_COLUMN):
                raise ConfigError("a retrieval model has no label: name query=[...] and target=[...] instead")
            sides = user_config.task.retrieval
            if not sides.query or not sides.target:
                raise ConfigError(
                    "problem_type 'retrieval' needs query and target columns: query=['title'], target=['image'] "
                    "(--query title --target image)"
                )
        elif is_reconstruction(user_config.task.problem_type):  # an autoencoder: no label column
            if merged.get("label") not in (None, ANOMALY_COLUMN):
                raise ConfigError(
                    "a reconstruction model has no label: leave label out (the anomaly flags of a test table are "
                    "given to evaluate(..., anomaly_label=COLUMN) / --anomaly-label); to keep a column out of the "
                    "inputs, ignore it"
                )
            if preset in ENSEMBLE_PRESETS:
                raise ConfigError(
                    f"preset '{preset}' fits an ensemble of predictors; a reconstruction model is one autoencoder: "
                    "use the default, 'fast', 'pretrained' or 'robust'"
                )
        elif merged.get("label") is None:
            raise ConfigError(
                "label is needed (the column to predict; --label); only problem_type 'retrieval' and "
                "'reconstruction' have none"
            )
        else:
            check_label_list(merged["label"])
            if not isinstance(merged["label"], str):
                check_multitask_type(user_config.task.problem_type)
            elif user_config.task.problem_type == "multitask":
                raise ConfigError(
                    "problem_type 'multitask' needs several label columns: label=['a', 'b'] (--label a,b)"
                )
        self._user_config, self._params = user_config, merged
        return self

    def clone(self) -> Predictor:
        """A new, unfitted Predictor with the same parameters (as ``sklearn.base.clone``)."""
        return type(self)(**self.get_params())

    @property
    def label(self) -> str | list[str]:
        """The target column, or the list of target columns of a multi-task model (retrieval and reconstruction
        models: the column their fit adds, :data:`~polymodal.tasks.retrieval.PAIR_COLUMN` /
        :data:`~polymodal.tasks.reconstruction.ANOMALY_COLUMN`)."""
        label = self._params.get("label")
        if label is None:
            return ANOMALY_COLUMN if is_reconstruction(self._user_config.task.problem_type) else PAIR_COLUMN
        return label

    @property
    def verbose(self) -> bool:
        return self._params["verbose"]

    @property
    def preset(self) -> str | None:
        return self._params["preset"]

    @property
    def config(self) -> PolymodalConfig:
        """The fitted model's resolved config after fit/load; before, the config the parameters describe."""
        return self.pipeline.config if self.pipeline is not None else self._user_config

    @property
    def problem_type(self) -> str | None:
        """The fitted model's problem type; before fit, the one given (None = inferred at fit time)."""
        if self.pipeline is not None:
            return self.pipeline.problem_type
        return self._params["problem_type"]

    def _fitted(self) -> FittedPipeline:
        if self.pipeline is None:
            raise NotFittedError("this Predictor has not been fitted; call fit() or Predictor.load() first")
        return self.pipeline

    # The fitted state, read through the pipeline (empty before fit).
    @property
    def schema(self) -> Schema | None:
        return None if self.pipeline is None else self.pipeline.schema

    @property
    def modalities(self) -> list[Modality]:
        return [] if self.pipeline is None else self.pipeline.modalities

    @property
    def processors(self) -> dict[str, Processor]:
        return {} if self.pipeline is None else self.pipeline.processors

    @property
    def task(self) -> Task | None:
        return None if self.pipeline is None else self.pipeline.task

    @property
    def model(self) -> torch.nn.Module | None:
        return None if self.pipeline is None else self.pipeline.model

    @property
    def fit_result(self) -> FitResult | None:
        return None if self.pipeline is None else self.pipeline.fit_result

    @property
    def backend(self) -> Any:
        """The backend running the network (None = eager torch; see :meth:`load`)."""
        return None if self.pipeline is None else self.pipeline.backend

    # ------------------------------------------------------------------------------------------------ fit
    def fit(
        self,
        data: Data,
        tuning_data: Data | None = None,
        *,
        time_limit: float | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
    ) -> Predictor:
        """Infer the schema, fit processors on the training split, train, and keep the best epoch.

        ``tuning_data`` (optional) is a labelled table used for validation instead of a split of ``data``.
        ``time_limit`` (optional): seconds of training for this call, instead of the constructor's ``time_limit``.
        ``checkpoint_dir`` (optional): a folder of its own where the network's training state is saved at every
        epoch end (one network: preset "fast", or the default on a large table); removed when the fit succeeds.
        ``resume``: continue the interrupted fit saved in ``checkpoint_dir`` (same data, label and arguments).
        """
        cfg = self._user_config
        verbose = self.verbose and is_main_process()  # a DDP run's other ranks train silently
        if time_limit is not None:  # this call only: the parameters (get_params, clone) stay as constructed
            cfg = apply_choices(cfg, time_limit=time_limit)
        if cfg.task.problem_type == "pretrain":  # no label: its own entry point, which saves a run to start from
            raise ConfigError(
                "problem_type 'pretrain' is fitted by Predictor.pretrain(table, out) (polymodal pretrain)"
            )
        checkpoint = self._checkpointing(data, tuning_data, cfg, checkpoint_dir, resume)
        if cfg.task.problem_type == "retrieval":  # the rows are the pairs; one network (no classical members)
            data = pair_table(data, cfg)
            tuning_data = None if tuning_data is None else pair_table(tuning_data, cfg)
            outcome = fit_pipeline(
                data,
                self.label,
                cfg,
                tuning_data=tuning_data,
                preset=self.preset,
                verbose=verbose,
                checkpoint=checkpoint,
            )
        elif is_reconstruction(cfg.task.problem_type):  # one autoencoder (no classical members); the label is added
            data = reconstruction_table(read_table(data, cfg.data_root))
            if tuning_data is not None:
                tuning_data = reconstruction_table(read_table(tuning_data, cfg.data_root))
            outcome = fit_pipeline(
                data,
                ANOMALY_COLUMN,
                cfg,
                tuning_data=tuning_data,
                preset=self.preset,
                verbose=verbose,
                checkpoint=checkpoint,
            )
        elif self.preset in ENSEMBLE_PRESETS or self.preset is None:
            from .selection import AUTO_PLAN, fit_ensemble

            auto = self.preset is None  # the default: the network, joined by classical members on small tables
            outcome = fit_ensemble(
                data,
                self.label,
                cfg,
                AUTO_PLAN if auto else None,
                tuning_data=tuning_data,
                preset=self.preset,
                verbose=verbose,
                auto=auto,
                checkpoint=checkpoint,
            )
        else:
            outcome = fit_pipeline(
                data,
                self.label,
                cfg,
                tuning_data=tuning_data,
                preset=self.preset,
                verbose=verbose,
                checkpoint=checkpoint,
            )
        self.pipeline, self.preset_report = outcome.pipeline, outcome.preset_report
        if checkpoint is not None:
            checkpoint.finish()
        return self

    def _checkpointing(
        self, data: Data, tuning_data: Data | None, cfg: PolymodalConfig, folder: str | Path | None, resume: bool
    ) -> Checkpointing | None:
        if folder is None:
            if resume:
                raise ConfigError("resume=True continues the fit saved in checkpoint_dir: pass checkpoint_dir too")
            return None
        checkpoint = Checkpointing(Path(folder), resume)
        checkpoint.begin(
            {
                "data": data_fingerprint(data),
                "tuning_data": None if tuning_data is None else data_fingerprint(tuning_data),
                "label": self.label,
                "preset": self.preset,
                "config": cfg.model_dump(mode="json"),
            }
        )
        return checkpoint

    def tune(
        self,
        data: Data,
        *,
        time_limit: float,
        trials: int | None = None,
        space: SearchSpace | SpaceFile | dict[str, Any] | str | Path | None = None,
        out: str | Path | None = None,
        tuning_data: Data | None = None,
        prune: bool = True,
    ) -> Predictor:
        """Search configs for the best validation score (Optuna: TPE sampler, median pruning) and keep the best
        trial's model, as :meth:`fit` would have trained it with that config. Returns self.

        Each trial is this Predictor's config with values from ``space`` applied (see docs/USER_GUIDE.md,
        "Tuning"); all trials share one training/validation split of ``data`` (or validate on ``tuning_data``).

        Args:
            time_limit: seconds for the whole search: no trial starts after it; each trial trains at most for the
                time left.
            trials: trials of the study at most (counting earlier runs into the same ``out``).
            space: None (generated from the config: fusion, encoder sizes, learning rate, dropout, modality
                dropout, epochs), a YAML file, a mapping ``{"defaults": bool, "params": {path: distribution}}``, or
                a :class:`~polymodal.tuning.SearchSpace`.
            out: the study's folder (``study.journal``, leaderboard.csv/.md, tune.png, ``best/``); the same ``out``
                resumes the study. None: kept in memory.
            prune: stop trials that are worse than the earlier ones' median at the same epoch.

        The study's summary (best trial, leaderboard) is in :attr:`tune_result`.
        """
        from .tuning import tune as run_tune

        if is_reconstruction(self._user_config.task.problem_type):
            raise ConfigError("tune searches configs of predictive models; fit a reconstruction model with fit()")

        result = run_tune(
            data,
            self.label,
            self._user_config,
            time_limit=time_limit,
            trials=trials,
            space=space,
            out=out,
            tuning_data=tuning_data,
            preset=self.preset,
            prune=prune,
            verbose=self.verbose,
        )
        self.pipeline, self.preset_report, self.tune_result = result.pipeline, [], result
        return self

    # ------------------------------------------------------------------------------------------- predict
    def predict(
        self,
        data: Data,
        *,
        on_error: str | None = None,
        data_root: str | Path | None = None,
        return_scores: bool = False,
        decoding: DecodingConfig | dict[str, Any] | None = None,
        chunk_rows: int | None = None,
    ) -> pd.Series | pd.DataFrame:
        """Predicted labels (or values, or generated texts; a multi-label model's tags as a list per row), indexed
        by the rows of ``data`` that could be used. A multi-task model returns a DataFrame with one column per target.

        Generation models only:
            return_scores: return a DataFrame with the text (column named like the label) and ``log_prob``, the
                sequence log-probability of that text (its tokens' log-probabilities summed, end token included).
            decoding: overrides of the fitted decoding settings for this call, e.g. ``{"method": "greedy"}`` or
                ``{"beam_width": 8, "length_penalty": 0.6, "max_length": 20, "no_repeat_ngram": 3}``.

        The table is read and decoded ``chunk_rows`` rows at a time (default 8,192), so that its decoded images and
        audio never all exist at once; the result is the same for any chunk size. :meth:`predict_to` writes the
        predictions of a table of any size to a file instead.
        """
        pipeline = self._fitted()
        with pipeline.decoding(decoding):
            return pipeline.predict(
                data, on_error=on_error, data_root=data_root, return_scores=return_scores, chunk_rows=chunk_rows
            )

    def predict_proba(
        self,
        data: Data,
        *,
        on_error: str | None = None,
        data_root: str | Path | None = None,
        chunk_rows: int | None = None,
    ) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Class probabilities, one column per class (classification only); a multi-label model's tag
        probabilities, one column per tag, each independent of the others. A multi-task model returns a dict:
        each classification target's name → its DataFrame of class probabilities (regression targets have none).
        Decoded ``chunk_rows`` rows at a time, as in :meth:`predict`."""
        return self._fitted().predict_proba(data, on_error=on_error, data_root=data_root, chunk_rows=chunk_rows)

    def predict_to(
        self,
        data: Data,
        out: str | Path | None,
        *,
        proba: bool = False,
        return_scores: bool = False,
        on_error: str | None = None,
        data_root: str | Path | None = None,
        decoding: DecodingConfig | dict[str, Any] | None = None,
        chunk_rows: int | None = None,
    ) -> PredictionSummary:
        """Predict a table of any size into the file ``out``, chunk by chunk, in memory bounded by one chunk
        (``chunk_rows`` rows, default 8,192); what ``polymodal predict`` writes.

        The file is CSV, Parquet (``.parquet``/``.pq``) or JSONL (``.jsonl``/``.ndjson``) by its suffix (None: CSV
        on stdout), with a ``row`` column (the input's row number, or the DataFrame's index), ``prediction`` (a
        multi-task model: one column per target), and with ``proba`` one ``proba_<class>`` column per class, with
        ``return_scores`` (generation) ``log_prob``. It is written to a temp file next to ``out`` and renamed when
        complete: an error or a stop leaves no partial file under the name ``out``.
        """
        pipeline = self._fitted()
        with pipeline.decoding(decoding):
            return predict_to(
                pipeline,
                data,
                out,
                proba=proba,
                scores=return_scores,
                on_error=on_error,
                data_root=data_root,
                chunk_rows=chunk_rows,
            )

    def evaluate(
        self,
        data: Data,
        *,
        on_error: str | None = None,
        data_root: str | Path | None = None,
        robustness: bool = False,
        corruptions: CorruptionSpec = None,
        robustness_out: str | Path | None = None,
        robustness_baseline: RobustnessReport | str | Path | None = None,
        decoding: DecodingConfig | dict[str, Any] | None = None,
        chunk_rows: int | None = None,
        robustness_reference: dict[str, list[Any]] | None = None,
        anomaly_label: str | None = None,
    ) -> dict[str, Any]:
        """Metrics on a labelled table (rows with an empty label are left out).

        A multi-task model reports each target's metrics on the rows that have that target, named
        ``"<target>/<metric>"`` (e.g. ``"rating/rmse"``, ``"recommended/accuracy"``), with ``"<target>/rows"``,
        and ``weighted_loss`` (the summed training loss on this table).

        Generation models: BLEU-1..4, ROUGE-L, CIDEr-D and exact match of the decoded texts; ``decoding``
        overrides the fitted decoding settings for this call (as in :meth:`predict`).

        With ``robustness=True`` the result also holds ``"robustness"``: a
        :class:`~polymodal.evaluation.robustness.RobustnessReport` of the model's score with each modality missing
        and corrupted at increasing levels (the table is decoded once; see docs/USER_GUIDE.md, "Robustness").

        Args:
            corruptions: which corruptions to sweep: None (all that apply, default levels), a list of names, or
                a mapping name → levels (None = default levels): ``{"occlusion": [0.1, 0.3], "white_noise": None}``.
            robustness_out: folder to write robustness.csv/.json/.md and one robustness_<modality>.png into.
            robustness_baseline: a report, or its robustness.json, of a reference model (MultiBench uses late
                fusion) that effective robustness is measured against; None = a flat curve (no loss).
            robustness_reference: modality → fitted models (Predictors, pipelines or run directories) that ignore
                that modality, e.g. single-modality models of the others; the best of them on this table is the
                sweep's "best model without this modality" line (graceful degradation stays above it).
            chunk_rows: rows read and decoded at a time (default 8,192; the metrics are the same for any size).
                A robustness sweep decodes the whole table at once.
            anomaly_label: reconstruction models: the column that flags anomalies (1/0, true/false); the metrics
                then add ``roc_auc`` and ``average_precision`` of ``anomaly_score`` (and ``roc_auc_<modality>``).
                Without it: the reconstruction errors only.
        """
        pipeline = self._fitted()
        if is_reconstruction(pipeline.problem_type):
            if robustness:
                raise ConfigError("robustness sweeps are for classification and regression models, not reconstruction")
            table = reconstruction_table(pipeline.read(data, data_root), anomaly_label)
            return pipeline.evaluate(table, on_error=on_error, data_root=data_root, chunk_rows=chunk_rows)
        if anomaly_label is not None:
            raise ConfigError(f"anomaly_label is for reconstruction models; this is a {pipeline.problem_type} model")
        if not robustness and (
            corruptions is not None
            or robustness_out is not None
            or robustness_baseline is not None
            or robustness_reference is not None
        ):
            raise ConfigError(
                "corruptions, robustness_out, robustness_baseline and robustness_reference need robustness=True"
            )
        if robustness and isinstance(pipeline.task, GenerationTask):
            raise ConfigError("robustness sweeps are for classification and regression models, not generation")
        if robustness and pipeline.problem_type == "multitask":
            raise ConfigError(
                "robustness sweeps are for single-target models; sweep a model trained on one target instead"
            )
        if robustness:  # bad names, levels or baselines fail before the table is decoded
            plan_sweep(pipeline.processors, corruptions)
            resolve_baseline(robustness_baseline, pipeline.task.monitor[0])
        if isinstance(pipeline.task, RetrievalTask):
            if robustness:
                raise ConfigError("robustness sweeps are for classification and regression models, not retrieval")
            return pipeline.evaluate(
                pair_table(data, pipeline.config, data_root), on_error=on_error, chunk_rows=chunk_rows
            )
        with pipeline.decoding(decoding):
            if not robustness:
                return pipeline.evaluate(data, on_error=on_error, data_root=data_root, chunk_rows=chunk_rows)
            metrics, decoded, _ = pipeline.score(data, on_error=on_error, data_root=data_root)
        if robustness:
            report = robustness_sweep(
                pipeline.model,
                pipeline.processors,
                pipeline.task,
                decoded.prepared,
                decoded.labels(self.label),
                corruptions=corruptions,
                clean=metrics,
                baseline=robustness_baseline,
                seed=pipeline.config.training.seed,
                batch_size=pipeline.predict_batch_size,
                progress=self.verbose,
                reference=reference_scores(robustness_reference, data, data_root) if robustness_reference else None,
                reference_name="best of the given models without it",
            )
            if robustness_out is not None:
                report.write(robustness_out)
            metrics["robustness"] = report
        return metrics

    # ------------------------------------------------------------------------------------------ retrieval
    def embed(
        self, data: Data, side: str = "query", *, data_root: str | Path | None = None, chunk_rows: int | None = None
    ) -> np.ndarray:
        """Retrieval models: unit-norm float32 vectors ``[rows, dim]`` of the ``side`` ("query" or "target")
        columns of ``data``, one per row in order (the other side's columns need not be in the table)."""
        return embed_rows(self._fitted(), data, side, data_root, chunk_rows)

    def search(
        self,
        queries: Data | np.ndarray,
        collection: Data | np.ndarray | ApproximateIndex,
        k: int = 10,
        *,
        data_root: str | Path | None = None,
    ) -> Hits:
        """Retrieval models: the top-``k`` rows of ``collection`` for each row of ``queries``, as
        :class:`~polymodal.search.Hits` (``indices`` [Q, k] collection row positions, best first, and ``scores``,
        cosine similarities). Tables are embedded (queries on the query side, the collection on the target side);
        arrays are taken as vectors from :meth:`embed`. Exact up to ``task.retrieval.exact_max_rows`` collection
        rows, approximate (a usearch index, ``pip install 'polymodal[retrieval]'``) above; an
        :class:`~polymodal.search.ApproximateIndex` (e.g. loaded from a run's ``search_index``) is searched as is."""
        return find(self._fitted(), queries, collection, k, data_root)

    # ------------------------------------------------------------------------- pre-training and zero-shot
    @classmethod
    def pretrain(
        cls,
        data: Data,
        out: str | Path | None = None,
        *,
        config: PolymodalConfig | dict[str, Any] | str | Path | None = None,
        ignore: list[str] | None = None,
        data_root: str | Path | None = None,
        seed: int | None = None,
        verbose: bool = True,
    ) -> Predictor:
        """Self-supervised pre-training on unlabelled rows (``polymodal pretrain``): every modality's encoder,
        trained with cross-modal InfoNCE between a row's modalities plus masked-modality prediction; saved to
        ``out`` when given. A later ``Predictor(label, init=out).fit(...)`` starts the encoders of the columns
        it shares with this table from these weights. ``ignore``: columns left out (e.g. a label column)."""
        p = cls(
            PAIR_COLUMN,
            problem_type="pretrain",
            config=config,
            ignore=ignore,
            data_root=data_root,
            seed=seed,
            verbose=verbose,
        )
        p.pipeline = run_pretrain(data, out, config=p._user_config, verbose=verbose and is_main_process())
        return p

    def zero_shot(
        self,
        data: Data,
        labels: list[str],
        prompt: str = DEFAULT_PROMPT,
        *,
        data_root: str | Path | None = None,
    ) -> ZeroShotResult:
        """Retrieval models with a text column alone on one side (e.g. ``clip_text`` captions vs ``clip_image``
        images): classify each row of ``data`` into one of ``labels``, names never trained on, by the cosine
        similarity of its embedding to each label's ``prompt`` (``{label}`` replaced). Returns the predictions
        (indexed like the table), the similarity of every row to every label, and the prompts."""
        return zero_shot(self._fitted(), data, labels, prompt, data_root)

    # ------------------------------------------------------------------------------------------ summaries
    def fit_summary(self) -> dict[str, Any]:
        """What :meth:`fit` resolved and measured, as a plain dict (JSON-ready).

        Keys: ``label``, ``problem_type`` (resolved), ``modalities`` (name → kind, columns and encoder name),
        ``fusion`` (None for a task that fuses nothing, e.g. generation), ``preset``, ``epochs_run``,
        ``best_epoch`` (1-based), ``stopped_early``, ``validation`` (the best epoch's validation metrics, without
        the ``val_`` prefix), ``fit_seconds``, ``parameters`` (the network's) and ``calibration`` (classification:
        the calibration and decision threshold learned on validation, with validation ECE and log-loss before and
        after; None when nothing was learned). Training figures are None for a loaded run directory without
        metrics. An ensemble (the quality preset) adds ``members``: one dict per member and one for the ensemble
        (name, kind, modalities, fusion, seed, weight, validation scores, status), best validation score first.
        """
        pipeline = self._fitted()
        r = pipeline.fit_result
        return {
            "label": pipeline.label,
            "problem_type": pipeline.problem_type,
            "modalities": {
                m.name: {"kind": m.kind, "columns": list(m.columns), "encoder": encoder_choice(pipeline.config, m).name}
                for m in pipeline.modalities
            },
            "fusion": self._fusion_name(pipeline),
            "preset": self.preset,
            "epochs_run": None if r is None else r.epochs_run,
            "best_epoch": None if r is None else r.best_epoch + 1,
            "stopped_early": None if r is None else r.stopped_early,
            "validation": {} if r is None else {k.removeprefix("val_"): v for k, v in r.validation.items()},
            "fit_seconds": None if r is None else r.fit_seconds,
            "parameters": _parameters(pipeline.model),
            "calibration": pipeline.task.calibration_summary(),
            **({} if pipeline.leaderboard is None else {"members": _records(pipeline.leaderboard)}),
        }

    def leaderboard(
        self, test_data: Data, *, data_root: str | Path | None = None, on_error: str | None = None
    ) -> pd.DataFrame:
        """The fitted models scored on a labelled table, best first: one row per model.

        Columns: ``model`` (its encoders and fusion in words), ``fusion``, ``score_test`` (the task's main metric,
        e.g. accuracy, RMSE for regression), ``score_val`` (the same metric on validation), one ``test_<metric>``
        column per metric of :meth:`evaluate`, ``fit_seconds`` and ``parameters``. A single network is one row. An
        ensemble (the quality preset) has one row per member and one for the ensemble (``model`` "ensemble"), with
        ``kind``, ``modalities``, ``weight`` (its share in the ensemble; 0: trained but not selected) and
        ``status`` ("ok", or why a member was skipped or failed: those have no scores). The table is decoded once.
        """
        pipeline = self._fitted()
        monitor, mode = pipeline.task.monitor
        if pipeline.leaderboard is not None and pipeline.config.ensemble is not None:
            from .ensemble import member_metrics

            metrics, decoded, _ = pipeline.score(test_data, data_root=data_root, on_error=on_error)
            labels = decoded.labels(pipeline.label)
            tests = member_metrics(pipeline.model, pipeline.loader(decoded.prepared), pipeline.task, labels)
            tests["ensemble"] = metrics
            rows = []
            for rec in _records(pipeline.leaderboard):
                m = tests.get(str(rec["member"]), {})
                rows.append(
                    {
                        "model": rec["member"],
                        "kind": rec.get("kind"),
                        "modalities": rec.get("modalities"),
                        "fusion": rec.get("fusion"),
                        "weight": rec.get("weight"),
                        "score_test": m.get(monitor),
                        "score_val": rec.get("score_val"),
                        **{f"test_{k}": v for k, v in m.items() if isinstance(v, (int, float))},
                        "fit_seconds": rec.get("fit_seconds"),
                        "parameters": rec.get("parameters"),
                        "status": rec.get("status"),
                    }
                )
            board = pd.DataFrame(rows)
        else:
            metrics = self.evaluate(test_data, data_root=data_root, on_error=on_error)
            summary = self.fit_summary()
            encoders = ", ".join(f"{name}: {m['encoder']}" for name, m in summary["modalities"].items())
            fusion = summary["fusion"]
            row = {
                "model": f"{encoders} → {fusion}" if fusion else encoders,
                "fusion": fusion,
                "score_test": metrics.get(monitor),
                "score_val": summary["validation"].get(monitor),
                **{f"test_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))},
                "fit_seconds": summary["fit_seconds"],
                "parameters": summary["parameters"],
            }
            board = pd.DataFrame([row])
        return board.sort_values("score_test", ascending=mode == "min", kind="stable", na_position="last").reset_index(
            drop=True
        )

    @staticmethod
    def _fusion_name(pipeline: FittedPipeline) -> str | None:
        if pipeline.config.ensemble is not None:
            return "ensemble"
        # A task whose architecture fuses nothing (generation) ignores the fusion section: report none.
        fused = TASK_PARAMS.get(pipeline.problem_type).architecture in ("fused", "autoencoder")
        return pipeline.config.fusion.name if fused else None

    # ------------------------------------------------------------------------------------------- explain
    def explain(
        self,
        rows: Data,
        method: str = "occlusion",
        data_root: str | Path | None = None,
        *,
        on_error: str | None = None,
        target: str | None = None,
    ) -> "list[Explanation]":
        """Explain each row of ``rows``: what each input column (and each part of it) contributed to the prediction.

        Classification explains the log-odds of the predicted class, log p − log(1 − p) (integrated gradients: its
        logit), which keep measuring evidence on confident rows where the probability is stuck at 1.00; regression
        explains the predicted value.

        Args:
            rows: the rows to explain (a path, DataFrame or Table with the model's columns; a label column, when
                present, is reported as the target).
            method: "occlusion" (the drop of the explained number when a part is replaced by "nothing": an image
                patch by the training mean, a spectrogram block, a token removed, a value set missing) or
                "integrated_gradients" (gradients integrated from a baseline input; see docs/USER_GUIDE.md,
                "Explanations").
            data_root: folder that relative file paths resolve against.
            target: classification with occlusion: "log_odds" (None, the default) or "probability" of the
                predicted class (saturates: on confident rows nearly every drop is ~0).

        Returns one :class:`~polymodal.explain.Explanation` per usable row, with the prediction, per-column
        attributions (image H×W maps over the processed image, audio maps over the log-mel spectrogram, one score
        per text token, one per numeric/category column), each column's share of the row's attribution, and the
        fusion's weights over modalities where the fusion has them. Plot one with
        :func:`polymodal.explain.plot_explanation`. Generation models raise :class:`~polymodal.errors.ExplainError`.
        """
        from .explain import explain as _explain

        return _explain(
            self._fitted(),
            rows,
            method=method,
            data_root=data_root,
            on_error=on_error,
            progress=self.verbose,
            target=target,
        )

    def importance(
        self,
        data: Data,
        *,
        methods: "tuple[str, ...] | list[str]" = ("drop", "permutation"),
        n_bootstrap: int = 200,
        repeats: int = 1,
        seed: int = 0,
        data_root: str | Path | None = None,
        on_error: str | None = None,
    ) -> "ImportanceResult":
        """Modality importance on a labelled table: how much the score falls without each input column.

        "drop" makes the column missing in every row (handled natively, as empty cells are); "permutation"
        shuffles its values across rows (``repeats`` times, averaged). Importance = intact score − score without
        the column (accuracy for classification; for regression the increase in RMSE), so higher = the model leans
        on the column more. Confidence intervals come from ``n_bootstrap`` resamples of the rows (the predictions
        are computed once per variant). Plot with :func:`polymodal.explain.plot_importance`.
        """
        from .explain import modality_importance

        return modality_importance(
            self._fitted(),
            data,
            methods=methods,
            n_bootstrap=n_bootstrap,
            repeats=repeats,
            seed=seed,
            data_root=data_root,
            on_error=on_error,
            progress=self.verbose,
        )

    # --------------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write the run directory atomically (see :mod:`polymodal.rundir`). Returns its path."""
        return self._fitted().save(path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, verbose: bool = True, backend: str = "torch") -> Predictor:
        """Rebuild a fitted Predictor from a run directory; predictions are identical to the saved one's.

        ``backend``: "torch" (eager), "onnx" or "onnx-int8" (ONNX Runtime on the directory's model.onnx /
        model.int8.onnx from ``polymodal export``, or on a graph exported in memory when it has none); the API and
        the preprocessing are the same for all of them. A generation model has "torch" and "onnx" (its encoder and
        decoder-step graphs, generator.*.onnx; greedy and beam search give the eager model's texts).
        """
        pipeline = FittedPipeline.load(path, verbose=verbose)
        if backend != "torch":
            from .serving.backends import load_backend  # onnxruntime is imported only when asked for

            pipeline.backend = load_backend(backend, pipeline, path)
        p = cls(pipeline.label, config=pipeline.config, verbose=verbose)
        p.pipeline = pipeline
        return p

    def __repr__(self) -> str:
        state = "fitted" if self.pipeline is not None else "not fitted"
        return f"Predictor(label={self.label!r}, {state})"

    # ------------------------------------------------------------------------------------------ notebooks
    def _repr_html_(self) -> str:
        """Jupyter's view of the predictor: schema, modalities and encoders, fit summary and validation metrics."""
        from .reporting.notebook import summary_html

        if self.pipeline is None:
            return summary_html(self.label, None, None)
        return summary_html(self.label, self.fit_summary(), self.pipeline.schema)

    def history(self) -> pd.DataFrame:
        """The training log as a DataFrame: one row per epoch (``epoch`` 0-based, ``train_loss``, ``val_loss``,
        ``val_<metric>``); empty for a loaded run directory (its ``training_log.csv`` holds the same rows)."""
        from .reporting.notebook import history_frame

        return history_frame(self._fitted())

    def plot_training(self) -> "Figure":
        """The training curves (loss and the monitored validation metric per epoch, the kept epoch dashed) as a
        matplotlib ``Figure``, drawn without pyplot: a notebook displays it, ``fig.savefig(path)`` writes it."""
        from .reporting.notebook import training_figure

        return training_figure(self._fitted())


def _user_config(params: dict[str, Any]) -> PolymodalConfig:
    """The config that a Predictor's parameters describe (the ``config`` parameter with the others applied),
    validated in one step so that a bad value is a :class:`ConfigError` naming its path."""
    cfg = PolymodalConfig.from_any(params.get("config"))
    updates: dict[str, Any] = {}
    if params.get("data_root") is not None:
        updates["data_root"] = str(params["data_root"])
    if params.get("columns"):
        updates["columns"] = {**cfg.columns, **params["columns"]}
    if params.get("ignore"):
        updates["ignore"] = list(dict.fromkeys(cfg.ignore + list(params["ignore"])))
    if params.get("on_error") is not None:
        updates["on_error"] = params["on_error"]
    data = {**cfg.to_dict(), **updates}
    for side in ("query", "target"):
        if params.get(side) is not None:
            cols = [params[side]] if isinstance(params[side], str) else list(params[side])
            data["task"] = {**data["task"], "retrieval": {**data["task"].get("retrieval", {}), side: cols}}
    if params.get("seed") is not None:
        data["training"] = {**data["training"], "seed": params["seed"]}
    if params.get("init") is not None:  # a pre-trained run the encoders start from (polymodal.warmstart)
        data["training"] = {**data["training"], "init": str(params["init"])}
    return apply_choices(
        data,
        fusion=params.get("fusion"),
        encoders=params.get("encoders"),
        problem_type=params.get("problem_type"),
        time_limit=params.get("time_limit"),
    )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with NaN as None (JSON-ready)."""
    return [
        {str(k): (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def _parameters(model: Any) -> int:
    """The network's number of parameters (0 when a backend other than torch runs it and there is no module)."""
    return 0 if model is None else int(count_parameters(model))
