"""The Predictor: fit / predict / predict_proba / evaluate / save / load, scikit-learn style.

All state is learned in ``fit`` (schema, processors, target encoding, weights) and saved by ``save``.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import lightning as L
import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError
from sklearn.model_selection import train_test_split

from . import __version__
from . import encoders as _encoders  # noqa: F401  (registers encoders)
from . import fusion as _fusion  # noqa: F401  (registers fusions)
from .config import DecodingConfig, PolymodalConfig
from .data.dataset import Prepared, make_loader, prepare
from .data.loaders import is_empty
from .data.processors import LoadContext, Processor, TabularProcessor, build_processors
from .data.readers import Table, read_table
from .errors import ConfigError, DataError, PolymodalError, RowIssue, SchemaError
from .evaluation.robustness import (CorruptionSpec, RobustnessReport, plan_sweep, resolve_baseline,
                                    robustness_sweep)
from .io import atomic_dir
from .model import MultimodalModel, build_model, check_components, count_parameters
from .presets import PRESETS, PresetChoice, apply_preset
from .rundir import (BACKBONES, FORMAT_VERSION, check_run_dir, read_json, read_weights, write_history,
                     write_json, write_weights)
from .schema import Modality, Schema, infer_problem_type, infer_schema
from .tasks import Task, build_task
from .tasks.generation import GenerationTask
from .training import FitResult, fit_model, predict_outputs

if TYPE_CHECKING:  # pragma: no cover
    from .explain import Explanation, ImportanceResult

log = logging.getLogger("polymodal")
Data = "pd.DataFrame | str | Path | Table"


class NotFittedError(PolymodalError):
    """The predictor was used before ``fit`` or ``load``."""


def _auto_batch_size(n: int) -> int:
    return 32 if n < 1_000 else 64 if n < 10_000 else 128


def _auto_epochs(n: int, batch_size: int) -> int:
    # Enough optimisation steps for small tables, capped for large ones; early stopping ends most runs sooner.
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    return int(min(max(math.ceil(2_000 / steps_per_epoch), 10), 30))


class Predictor:
    """Train and use a multimodal model on a table.

    Args:
        label: name of the target column.
        problem_type: "binary", "multiclass" or "regression" (inferred from the label when None), or "generation":
            the label is text to write (captions, free-form answers; see docs/USER_GUIDE.md, "Generation").
        config: a :class:`PolymodalConfig`, a dict, or a YAML/JSON path.
        data_root: folder that relative file paths resolve against (default: the table's folder).
        columns: column → kind overrides ("image", "audio", "text", "numeric", "category", "ignore").
        ignore: columns to leave out.
        time_limit: seconds of training at most.
        seed: random seed; the same seed and data give the same model.
        on_error: "fail" (default), "skip" bad rows, or treat bad cells as "missing".
        preset: "fast" (from-scratch encoders, the default) or "pretrained" (a frozen pretrained encoder for each
            text/image/audio modality whose weights are on this machine; see :mod:`polymodal.presets`). Encoders
            chosen in ``config`` are kept. What was chosen is in ``preset_report`` after ``fit``.
        verbose: show progress bars.

    Example:
        >>> p = Predictor(label="label").fit("train.csv")
        >>> p.evaluate("test.csv")["accuracy"]
    """

    def __init__(self, label: str, *, problem_type: str | None = None,
                 config: PolymodalConfig | dict[str, Any] | str | Path | None = None,
                 data_root: str | Path | None = None, columns: dict[str, str] | None = None,
                 ignore: list[str] | None = None, time_limit: float | None = None, seed: int | None = None,
                 on_error: str | None = None, preset: str | None = None, verbose: bool = True):
        self.label = label
        if preset is not None and preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
        self.preset = preset
        self.preset_report: list[PresetChoice] = []
        cfg = PolymodalConfig.from_any(config)
        updates: dict[str, Any] = {}
        if data_root is not None:
            updates["data_root"] = str(data_root)
        if columns:
            updates["columns"] = {**cfg.columns, **columns}
        if ignore:
            updates["ignore"] = list(dict.fromkeys(cfg.ignore + list(ignore)))
        if on_error is not None:
            updates["on_error"] = on_error
        cfg = PolymodalConfig.from_any({**cfg.to_dict(), **updates})
        if problem_type is not None:
            cfg.task.problem_type = problem_type
        if time_limit is not None:
            cfg.training.time_limit = time_limit
        if seed is not None:
            cfg.training.seed = seed
        self._user_config = cfg
        self.config = cfg  # after fit/load: the resolved config of the fitted model
        self.verbose = verbose
        self.schema: Schema | None = None
        self.modalities: list[Modality] = []
        self.processors: dict[str, Processor] = {}
        self.task: Task | None = None
        self.model: MultimodalModel | None = None
        self.fit_result: FitResult | None = None
        # Set by load(backend=...): a polymodal.serving.backends.Backend that runs the model (None = eager torch).
        self.backend: Any = None

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self, data: Data, tuning_data: Data | None = None) -> "Predictor":
        """Infer the schema, fit processors on the training split, train, and keep the best epoch.

        ``tuning_data`` (optional) is a labelled table used for validation instead of a split of ``data``.
        """
        cfg = self._user_config.model_copy(deep=True)  # resolved values go here; the user's config stays as given
        check_components(cfg)
        start = time.perf_counter()
        table = read_table(data, cfg.data_root)
        frame = self._labelled(table.frame, "training")
        schema = infer_schema(frame, self.label, cfg.columns, cfg.ignore)
        if not schema.input_columns():
            raise SchemaError("no usable input columns: every column is the label or ignored")
        self.preset_report = apply_preset(cfg, self.preset, {m.kind for m in schema.modalities()})
        problem_type = cfg.task.problem_type or infer_problem_type(frame[self.label])[0]
        cfg.task.problem_type = problem_type  # type: ignore[assignment]
        task = build_task(problem_type, cfg.task)
        task.resolve(cfg, {m.kind for m in schema.modalities()})
        task.fit_target(frame[self.label])

        if tuning_data is None:
            train_pos, val_pos = self._split(frame[self.label], task, cfg.training.validation_fraction,
                                             cfg.training.seed)
            val_table = Table(frame.iloc[val_pos], table.root, table.source)
            frame = frame.iloc[train_pos]
        else:
            tuning = read_table(tuning_data, cfg.data_root)
            val_table = Table(self._labelled(tuning.frame, "tuning"), tuning.root, tuning.source)
            self._check_columns(val_table.frame, schema)
        modalities, processors = build_processors(schema, cfg)
        for p in processors.values():
            p.fit(frame, LoadContext(table.root, cfg.limits))
        train, val = self._prepare_all(
            [(Table(frame, table.root, table.source), "training rows"), (val_table, "validation rows")],
            processors, task, cfg)
        if len(train) == 0 or len(val) == 0:
            raise DataError(f"not enough usable rows to train: {len(train)} training and {len(val)} validation rows")

        tcfg = cfg.training
        tcfg.batch_size = tcfg.batch_size or _auto_batch_size(len(train))
        tcfg.max_epochs = tcfg.max_epochs or _auto_epochs(len(train), tcfg.batch_size)
        L.seed_everything(tcfg.seed, workers=True, verbose=False)
        model = build_model(cfg, modalities, processors, task)
        train_loader = make_loader(train, processors, tcfg.batch_size, True, task.target_dtype, tcfg.num_workers,
                                   tcfg.seed)
        val_loader = make_loader(val, processors, max(tcfg.batch_size, 128), False, task.target_dtype,
                                 tcfg.num_workers)
        val_labels = val_table.frame[self.label].iloc[val.rows].reset_index(drop=True)
        log.info("training on %d rows, validating on %d; modalities: %s; %s parameters", len(train), len(val),
                 ", ".join(f"{m.name} ({m.kind})" for m in modalities), f"{count_parameters(model):,}")
        result = fit_model(model, task, train_loader, val_loader, val_labels, tcfg, tcfg.max_epochs,
                           progress=self.verbose)
        result.fit_seconds = round(time.perf_counter() - start, 3)
        model.cpu().eval()
        self.config = cfg
        self.schema, self.modalities, self.processors = schema, modalities, processors
        self.task, self.model, self.fit_result = task, model, result
        self.backend = None
        return self

    def _prepare_all(self, tables: list[tuple[Table, str]], processors: dict[str, Processor], task: Task,
                     cfg: PolymodalConfig) -> list[Prepared]:
        """Decode each table; under ``on_error=fail`` report the problems of all of them together."""
        out, issues = [], []
        for table, what in tables:
            try:
                out.append(prepare(table.frame, processors, LoadContext(table.root, cfg.limits), cfg.on_error,
                                   targets=task.encode_target(table.frame[self.label]), progress=self.verbose,
                                   what=what))
            except DataError as e:
                issues += e.issues
        if issues:
            rows = len({i.row for i in issues})
            raise DataError(f"{rows} rows have problems that stop training:", sorted(issues, key=RowIssue.sort_key),
                            hint="Fix or remove these rows, or pass --on-error skip (drop them) or "
                                 "--on-error missing (treat the bad cells as absent).")
        return out

    def _labelled(self, frame: pd.DataFrame, what: str) -> pd.DataFrame:
        if len(frame) == 0:
            raise DataError(f"the {what} table has no rows")
        if self.label not in frame.columns:
            raise SchemaError(f"label column '{self.label}' is not in the {what} table; its columns are: "
                              f"{', '.join(map(str, frame.columns))}")
        empty = frame[self.label].map(is_empty).to_numpy(dtype=bool)
        if empty.all():
            raise DataError(f"label column '{self.label}' has no values: all {len(frame)} rows are empty/NaN",
                            hint="Check the --label name and that the column is filled in.")
        if empty.any():
            rows = np.flatnonzero(empty)
            log.warning("dropped %d %s rows whose label '%s' is empty (rows %s%s)", len(rows), what, self.label,
                        ", ".join(map(str, rows[:10])), " ..." if len(rows) > 10 else "")
        return frame[~empty]

    @staticmethod
    def _split(labels: pd.Series, task: Task, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Stratified train/validation split of row positions (plain random when classes are too small)."""
        n = len(labels)
        if n < 4:
            raise DataError(f"only {n} labelled rows; at least 4 are needed to train and validate")
        strat = None
        if task.stratify:
            y = task.encode_target(labels)
            counts = np.bincount(y)
            counts = counts[counts > 0]
            if counts.min() >= 2 and max(1, round(fraction * n)) >= len(counts):
                strat = y
        train, val = train_test_split(np.arange(n), test_size=fraction, random_state=seed, stratify=strat)
        return np.sort(train), np.sort(val)

    # ------------------------------------------------------------------------------------------- predict
    def _require_fitted(self) -> None:
        if self.model is None or self.schema is None or self.task is None:
            raise NotFittedError("this Predictor has not been fitted; call fit() or Predictor.load() first")

    def _check_columns(self, frame: pd.DataFrame, schema: Schema) -> None:
        missing = [c for c in schema.input_columns() if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"the table lacks column(s) the model was trained on: {', '.join(missing)} "
                f"(expected: {', '.join(schema.input_columns())}; extra columns are ignored)")

    def _predict_batch_size(self) -> int:
        return max(self.config.training.batch_size or 0, 256)

    def _outputs(self, data: Data, on_error: str | None, data_root: str | Path | None,
                 frame_filter=None) -> tuple[np.ndarray, pd.DataFrame, Prepared]:
        self._require_fitted()
        table = read_table(data, data_root if data_root is not None else self.config.data_root)
        frame = table.frame
        if len(frame) == 0:
            raise DataError("the table has no rows")
        if frame_filter is not None:
            frame = frame_filter(frame)
        self._check_columns(frame, self.schema)
        for proc in self.processors.values():
            if isinstance(proc, TabularProcessor):
                for col, rows in proc.unknown_categories(frame).items():
                    log.warning("column '%s': %d rows hold categories not seen in training (rows %s%s); they are "
                                "encoded as 'unknown'", col, len(rows), ", ".join(str(frame.index[r]) for r in rows[:10]),
                                " ..." if len(rows) > 10 else "")
        ctx = LoadContext(table.root, self.config.limits)
        prepared = prepare(frame, self.processors, ctx, on_error or self.config.on_error, progress=self.verbose)
        loader = make_loader(prepared, self.processors, self._predict_batch_size(), False)
        outputs = (predict_outputs(self.model, loader, self.task) if self.backend is None
                   else self.backend.predict(loader))
        return outputs, frame, prepared

    @contextlib.contextmanager
    def _decoding(self, decoding: "DecodingConfig | dict[str, Any] | None") -> Iterator[None]:
        """Decode with ``decoding`` (overrides of the fitted ``task.generation.decoding``) inside the block."""
        if decoding is None:
            yield
            return
        task = self.task
        if not isinstance(task, GenerationTask):
            raise ConfigError("decoding options are for generation models; this is a "
                              f"{task.problem_type if task else 'not fitted'} model")
        old = task.decoding
        updates = decoding.model_dump(exclude_unset=True) if isinstance(decoding, DecodingConfig) else dict(decoding)
        try:
            task.decoding = DecodingConfig.model_validate({**old.model_dump(), **updates})
        except ValidationError as e:
            raise ConfigError(f"invalid decoding options:\n{e}") from None
        try:
            yield
        finally:
            task.decoding = old

    def predict(self, data: Data, *, on_error: str | None = None, data_root: str | Path | None = None,
                return_scores: bool = False,
                decoding: "DecodingConfig | dict[str, Any] | None" = None) -> pd.Series | pd.DataFrame:
        """Predicted labels (or values, or generated texts), indexed by the rows of ``data`` that could be used.

        Generation models only:
            return_scores: return a DataFrame with the text (column named like the label) and ``log_prob``, the
                sequence log-probability of that text (its tokens' log-probabilities summed, end token included).
            decoding: overrides of the fitted decoding settings for this call, e.g. ``{"method": "greedy"}`` or
                ``{"beam_width": 8, "length_penalty": 0.6, "max_length": 20, "no_repeat_ngram": 3}``.
        """
        self._require_fitted()
        if return_scores and not isinstance(self.task, GenerationTask):
            raise ConfigError("return_scores is for generation models; use predict_proba for class probabilities")
        with self._decoding(decoding):
            outputs, frame, prepared = self._outputs(data, on_error, data_root)
        index = frame.index[prepared.rows]
        text = pd.Series(self.task.postprocess(outputs), index=index, name=self.label)
        if return_scores:
            return pd.DataFrame({self.label: text, "log_prob": np.asarray(outputs.scores, dtype=np.float64)},
                                index=index)
        return text

    def predict_proba(self, data: Data, *, on_error: str | None = None,
                      data_root: str | Path | None = None) -> pd.DataFrame:
        """Class probabilities, one column per class (classification only)."""
        if self.task is not None and self.task.problem_type in ("regression", "generation"):
            raise PolymodalError(f"predict_proba is for classification; this is a {self.task.problem_type} model"
                                 + (" (predict(..., return_scores=True) gives each text's log-probability)"
                                    if self.task.problem_type == "generation" else ""))
        outputs, frame, prepared = self._outputs(data, on_error, data_root)
        return pd.DataFrame(self.task.predict_proba(outputs), index=frame.index[prepared.rows],
                            columns=list(self.task.classes))

    def evaluate(self, data: Data, *, on_error: str | None = None, data_root: str | Path | None = None,
                 robustness: bool = False, corruptions: CorruptionSpec = None,
                 robustness_out: str | Path | None = None,
                 robustness_baseline: RobustnessReport | str | Path | None = None,
                 decoding: "DecodingConfig | dict[str, Any] | None" = None) -> dict[str, Any]:
        """Metrics on a labelled table (rows with an empty label are left out).

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
        """
        self._require_fitted()
        if not robustness and (corruptions is not None or robustness_out is not None
                               or robustness_baseline is not None):
            raise ConfigError("corruptions, robustness_out and robustness_baseline need robustness=True")
        if robustness and isinstance(self.task, GenerationTask):
            raise ConfigError("robustness sweeps are for classification and regression models, not generation")
        if robustness:  # bad names, levels or baselines fail before the table is decoded
            plan_sweep(self.processors, corruptions)
            resolve_baseline(robustness_baseline, self.task.monitor[0])
        with self._decoding(decoding):
            outputs, frame, prepared = self._outputs(data, on_error, data_root,
                                                     frame_filter=lambda f: self._labelled(f, "evaluation"))
        labels = frame[self.label].iloc[prepared.rows].reset_index(drop=True)
        metrics: dict[str, Any] = self.task.metrics(labels, outputs)
        metrics["rows"] = float(len(prepared))
        if robustness:
            report = robustness_sweep(
                self.model, self.processors, self.task, prepared, labels, corruptions=corruptions, clean=metrics,
                baseline=robustness_baseline, seed=self.config.training.seed, batch_size=self._predict_batch_size(),
                progress=self.verbose)
            if robustness_out is not None:
                report.write(robustness_out)
            metrics["robustness"] = report
        return metrics

    # ------------------------------------------------------------------------------------------- explain
    def explain(self, rows: Data, method: str = "occlusion", data_root: str | Path | None = None, *,
                on_error: str | None = None) -> "list[Explanation]":
        """Explain each row of ``rows``: what each input column (and each part of it) contributed to the prediction.

        Classification explains the probability of the predicted class, regression the predicted value.

        Args:
            rows: the rows to explain (a path, DataFrame or Table with the model's columns; a label column, when
                present, is reported as the target).
            method: "occlusion" (the drop of the explained number when a part is replaced by "nothing": an image
                patch by the training mean, a spectrogram block, a token removed, a value set missing) or
                "integrated_gradients" (gradients integrated from a baseline input; see docs/USER_GUIDE.md,
                "Explanations").
            data_root: folder that relative file paths resolve against.

        Returns one :class:`~polymodal.explain.Explanation` per usable row, with the prediction, per-column
        attributions (image H×W maps over the processed image, audio maps over the log-mel spectrogram, one score
        per text token, one per numeric/category column), each column's share of the row's attribution, and the
        fusion's weights over modalities where the fusion has them. Plot one with
        :func:`polymodal.explain.plot_explanation`. Generation models raise :class:`~polymodal.errors.ExplainError`.
        """
        from .explain import explain as _explain

        return _explain(self, rows, method=method, data_root=data_root, on_error=on_error, progress=self.verbose)

    def importance(self, data: Data, *, methods: "tuple[str, ...] | list[str]" = ("drop", "permutation"),
                   n_bootstrap: int = 200, repeats: int = 1, seed: int = 0, data_root: str | Path | None = None,
                   on_error: str | None = None) -> "ImportanceResult":
        """Modality importance on a labelled table: how much the score falls without each input column.

        "drop" makes the column missing in every row (handled natively, as empty cells are); "permutation"
        shuffles its values across rows (``repeats`` times, averaged). Importance = intact score − score without
        the column (accuracy for classification; for regression the increase in RMSE), so higher = the model leans
        on the column more. Confidence intervals come from ``n_bootstrap`` resamples of the rows (the predictions
        are computed once per variant). Plot with :func:`polymodal.explain.plot_importance`.
        """
        from .explain import modality_importance

        return modality_importance(self, data, methods=methods, n_bootstrap=n_bootstrap, repeats=repeats,
                                   seed=seed, data_root=data_root, on_error=on_error, progress=self.verbose)

    # --------------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write the run directory atomically (see :mod:`polymodal.rundir`). Returns its path."""
        self._require_fitted()
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            write_json(tmp / "polymodal.json", {
                "format": FORMAT_VERSION, "polymodal_version": __version__, "label": self.label,
                "problem_type": self.task.problem_type,
                "modalities": [{"name": m.name, "kind": m.kind, "columns": m.columns} for m in self.modalities]})
            (tmp / "config.yaml").write_text(self.config.to_yaml(), encoding="utf-8")
            (tmp / "schema.json").write_text(self.schema.to_json() + "\n", encoding="utf-8")
            write_json(tmp / "processors.json", {m: p.state() for m, p in self.processors.items()})
            for m, p in self.processors.items():
                if p.has_assets:  # a pretrained model's tokenizer / image processor / config.json
                    p.save_assets(tmp / BACKBONES / m)
            tensors = {f"{m}/{k}": t for m, p in self.processors.items() for k, t in p.tensors().items()}
            if tensors:
                write_weights(tmp / "processors.safetensors", tensors)
            write_json(tmp / "task.json", self.task.state())
            write_weights(tmp / "model.safetensors", self.model.state_dict())
            if self.fit_result is not None:
                r = self.fit_result
                write_json(tmp / "metrics.json", {
                    "validation": r.validation, "best_epoch": r.best_epoch, "epochs_run": r.epochs_run,
                    "fit_seconds": r.fit_seconds, "stopped_early": r.stopped_early,
                    "parameters": count_parameters(self.model)})
                write_history(tmp / "training_log.csv", r.history)
        return path

    @classmethod
    def load(cls, path: str | Path, verbose: bool = True, backend: str = "torch") -> "Predictor":
        """Rebuild a fitted Predictor from a run directory; predictions are identical to the saved one's.

        ``backend``: "torch" (eager), "onnx" or "onnx-int8" (ONNX Runtime on the directory's model.onnx /
        model.int8.onnx from ``polymodal export``, or on a graph exported in memory when it has none); the API and
        the preprocessing are the same for all of them.
        """
        path = Path(path)
        check_run_dir(path)
        meta = read_json(path / "polymodal.json")
        config = PolymodalConfig.from_any(yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")))
        p = cls(meta["label"], config=config, verbose=verbose)
        p.schema = Schema.from_dict(read_json(path / "schema.json"))
        p.modalities, p.processors = build_processors(p.schema, config)
        states = read_json(path / "processors.json")
        tensors = read_weights(path / "processors.safetensors") if (path / "processors.safetensors").is_file() else {}
        for name, proc in p.processors.items():
            proc.set_state(states[name], {k.split("/", 1)[1]: t for k, t in tensors.items()
                                          if k.split("/", 1)[0] == name})
            if proc.has_assets:
                proc.load_assets(path / BACKBONES / name)
        p.task = build_task(meta["problem_type"], config.task)
        p.task.set_state(read_json(path / "task.json"))
        p.model = build_model(config, p.modalities, p.processors, p.task)
        p.model.load_state_dict(read_weights(path / "model.safetensors"))
        p.model.eval()
        if (path / "metrics.json").is_file():
            m = read_json(path / "metrics.json")
            p.fit_result = FitResult(m["best_epoch"], m["epochs_run"], m["fit_seconds"], m["stopped_early"],
                                     m["validation"])
        if backend != "torch" and isinstance(p.task, GenerationTask):
            raise ConfigError(f"backend '{backend}' runs classification and regression models; a generation model "
                              "decodes step by step and runs on the torch backend only")
        if backend != "torch":
            from .serving.backends import load_backend  # onnxruntime is imported only when asked for

            p.backend = load_backend(backend, p, path)
        return p

    @property
    def problem_type(self) -> str | None:
        return None if self.task is None else self.task.problem_type

    def __repr__(self) -> str:
        state = "fitted" if self.model is not None else "not fitted"
        return f"Predictor(label={self.label!r}, {state})"
