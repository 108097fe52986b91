"""The fitted pipeline: what ``fit`` learns and every other part of polymodal uses.

A :class:`FittedPipeline` holds the resolved config, the schema, the fitted processors, the task (target encoding)
and the network. It turns a table into decoded rows (:meth:`FittedPipeline.prepare`), decoded rows into the
network's outputs (:meth:`FittedPipeline.outputs`), and saves itself as / loads itself from a run directory
(:mod:`polymodal.rundir`). Explanations, the report, export, serving, pruning and ``compare`` use these public
methods only; :class:`~polymodal.api.Predictor` is the user-facing estimator over it.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError

from . import encoders as _encoders  # noqa: F401  (registers encoders)
from . import ensemble as _ensemble  # noqa: F401  (registers the "ensemble" architecture)
from . import fusion as _fusion  # noqa: F401  (registers fusions)
from .config import DecodingConfig, PolymodalConfig, parse_yaml
from .data.batches import DEFAULT_CHUNK_ROWS, iter_table, table_rows
from .data.dataset import Prepared, make_loader, prepare
from .data.loaders import is_empty
from .data.processors import LoadContext, Processor, TabularProcessor, build_processors
from .data.progress import Progress
from .data.readers import Table, read_table
from .errors import ConfigError, DataError, NotFittedError, PolymodalError, RowIssue, SchemaError, row_label
from .model import build_model, count_parameters
from .ranks import is_main_process
from .rundir import (
    BACKBONES,
    FORMAT_VERSION,
    LEADERBOARD,
    RunFiles,
    read_run,
    write_history,
    write_json,
    write_weights,
    writing,
)
from .schema import Modality, Schema
from .tasks import Task, build_task
from .tasks.classification import ClassificationTask
from .tasks.generation import GenerationTask
from .tasks.multilabel import MultilabelTask
from .tasks.multitask import MultiTask
from .training import FitResult, predict_outputs
from .training.tracking import log_run_directory
from .version import __version__

log = logging.getLogger("polymodal")

#: What the public methods accept as a table: a DataFrame, a path to a CSV/Parquet/JSONL file, or a Table.
Data = pd.DataFrame | str | Path | Table


#: A label: one target column, or several (a multi-task model).
Label = str | list[str]


def label_columns(label: Label) -> list[str]:
    """The target columns of ``label`` (one for a single target)."""
    return [label] if isinstance(label, str) else list(label)


def check_label_list(label: Label) -> None:
    """Refuse an empty or repeated list of targets before any table is read."""
    if isinstance(label, str):
        return
    names = list(label)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"the label must be a column name or a non-empty list of column names, not {label!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"the label list names column(s) more than once: {', '.join(repeated)}")


def label_values(frame: pd.DataFrame, label: Label) -> Any:
    """``frame[label]``: a Series for one target column, a DataFrame (one column per target) for several, which is
    what a multi-task task encodes."""
    return frame[label]


def labelled_rows(
    frame: pd.DataFrame, label: Label, what: str, require_values: bool = True, first_row: int = 0
) -> pd.DataFrame:
    """The rows of ``frame`` that have a label (``what`` names the table in messages: "training", "evaluation").

    Raises when a label column is absent or entirely empty; rows with an empty label are dropped with a warning.
    With several targets (a list), a row is kept when it has at least one of them. For one chunk of a larger table,
    ``require_values=False`` allows an empty label column (the caller checks the whole table) and ``first_row`` is
    the chunk's first row's position, added to the positions the warning names.
    """
    if len(frame) == 0:
        raise DataError(f"the {what} table has no rows")
    check_label_list(label)
    names = label_columns(label)
    absent = [n for n in names if n not in frame.columns]
    if absent:
        which = f"label column '{absent[0]}' is" if len(absent) == 1 else f"label columns {', '.join(absent)} are"
        raise SchemaError(f"{which} not in the {what} table; its columns are: {', '.join(map(str, frame.columns))}")
    empty_by = {name: frame[name].map(is_empty).to_numpy(dtype=bool) for name in names}
    for name, col_empty in empty_by.items():
        if require_values and col_empty.all():
            raise empty_label_error(name, len(frame))
    empty = np.logical_and.reduce(list(empty_by.values()))
    if empty.any():
        rows = np.flatnonzero(empty)
        log.warning(
            "dropped %d %s rows whose label %s empty (rows %s%s)",
            len(rows),
            what,
            f"'{label}' is" if isinstance(label, str) else f"columns ({', '.join(names)}) are all",
            ", ".join(str(r + first_row) for r in rows[:10]),
            " ..." if len(rows) > 10 else "",
        )
    return frame[~empty]


def empty_label_error(name: str, rows: int) -> DataError:
    """The error for a label column with no value in any of the table's ``rows`` rows."""
    return DataError(
        f"label column '{name}' has no values: all {rows} rows are empty/NaN",
        hint="Check the label name and that the column is filled in.",
    )


def join_outputs(task: Task, parts: list[Any]) -> Any:
    """The outputs of several chunks of rows as one, in order (arrays of numbers, or a task's own outputs such as
    generated texts, which the task gathers)."""
    if len(parts) == 1:
        return parts[0]
    if parts and all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    return task.collect_outputs(parts)


def nonfinite_rows(outputs: Any) -> np.ndarray:
    """Positions of the rows whose network outputs hold NaN or inf (none for outputs that are not an array of
    numbers, e.g. generated texts). Such a row has no prediction: its class would be an argmax over NaN."""
    if not isinstance(outputs, np.ndarray) or outputs.dtype.kind != "f" or outputs.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(~np.isfinite(outputs.reshape(len(outputs), -1)).all(axis=1))


NONFINITE_OUTPUT = "the model's output is NaN or inf, so there is no prediction"


def check_columns(frame: pd.DataFrame, schema: Schema) -> None:
    """Raise a :class:`SchemaError` naming the input columns the model needs that ``frame`` lacks."""
    missing = [c for c in schema.input_columns() if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"the table lacks column(s) the model was trained on: {', '.join(missing)} "
            f"(expected: {', '.join(schema.input_columns())}; extra columns are ignored)"
        )


@dataclass
class DecodedTable:
    """A table read and decoded by a pipeline's processors.

    ``frame`` is the table as read (after the label filter, for labelled reads); ``prepared.rows`` are the
    positions in ``frame`` of the rows that could be used (all of them unless ``on_error="skip"`` dropped some).
    """

    frame: pd.DataFrame
    prepared: Prepared
    root: Path
    source: str

    @property
    def usable(self) -> pd.DataFrame:
        """The rows of ``frame`` that were decoded, in order."""
        return self.frame.iloc[self.prepared.rows]

    @property
    def index(self) -> pd.Index:
        """The index labels of the usable rows (predictions are indexed by them)."""
        return self.frame.index[self.prepared.rows]

    def labels(self, label: Label) -> Any:
        """The label of each usable row, positionally indexed (0..n-1) like the outputs (a DataFrame with one
        column per target for several targets)."""
        return self.usable[label].reset_index(drop=True)


class FittedPipeline:
    """A fitted multimodal model with everything needed to use it: config, schema, processors, task, network.

    Build one with :func:`polymodal.fitting.fit_pipeline` or :meth:`load`; all of its state was learned in fit.

    Attributes:
        label: the target column, or the list of target columns of a multi-task model.
        config: the resolved config (every automatic choice filled in).
        schema: column kinds with the reasons they were chosen.
        modalities: the encoders' inputs (one per image/audio/text column, one for the tabular columns).
        processors: modality name → fitted processor.
        task: the task (target encoding, head, loss, metrics, postprocessing).
        model: the network (``torch.nn.Module``), on the CPU in eval mode after fit and load.
        fit_result: the training summary (None for a loaded run without metrics.json, or after pruning).
        backend: None for eager torch, else a :class:`polymodal.serving.backends.Backend` that runs the network.
        verbose: show progress bars while decoding and training.
        leaderboard: an ensemble's members (and the ensemble) with their validation scores and weights, one row
            each (saved as leaderboard.csv); None for a single network.
    """

    def __init__(
        self,
        label: Label,
        config: PolymodalConfig,
        schema: Schema,
        modalities: list[Modality],
        processors: dict[str, Processor],
        task: Task,
        model: torch.nn.Module,
        fit_result: FitResult | None = None,
        verbose: bool = True,
    ):
        self.label = label
        self.config = config
        self.schema = schema
        self.modalities = modalities
        self.processors = processors
        self.task = task
        self.model = model
        self.fit_result = fit_result
        self.verbose = verbose
        self.backend: Any = None
        self.leaderboard: pd.DataFrame | None = None

    @property
    def problem_type(self) -> str:
        return self.task.problem_type

    @property
    def single_label(self) -> str:
        """The label column of a single-target model (a multi-task model has several: :class:`ConfigError`)."""
        if not isinstance(self.label, str):
            raise ConfigError(f"this is a multi-task model with several targets ({', '.join(self.label)})")
        return self.label

    @property
    def predict_batch_size(self) -> int:
        """Rows per batch at prediction time: inference keeps no activations, so larger than training's."""
        return max(self.config.training.batch_size or 0, 256)

    # ------------------------------------------------------------------------------------------ decoding
    def read(self, data: Data, data_root: str | Path | None = None) -> Table:
        """Read a table; relative file paths resolve against ``data_root``, else the config's, else its folder."""
        return read_table(data, data_root if data_root is not None else self.config.data_root)

    def labelled(self, frame: pd.DataFrame, what: str) -> pd.DataFrame:
        """The rows of ``frame`` that have a label (see :func:`labelled_rows`)."""
        return labelled_rows(frame, self.label, what)

    def check_columns(self, frame: pd.DataFrame) -> None:
        """Raise a :class:`SchemaError` when ``frame`` lacks an input column the model was trained on."""
        check_columns(frame, self.schema)

    def prepare(
        self,
        data: Data,
        *,
        on_error: str | None = None,
        data_root: str | Path | None = None,
        labelled: str | None = None,
        frame_filter: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    ) -> DecodedTable:
        """Read ``data`` and decode every cell with the fitted processors.

        Args:
            on_error: "fail", "skip" or "missing" for cells that cannot be decoded (default: the config's).
            data_root: folder that relative file paths resolve against.
            labelled: keep only rows with a label; the value names the table in messages ("evaluation").
            frame_filter: applied to the frame after reading (and after the label filter).
        """
        table = self.read(data, data_root)
        frame = table.frame
        if len(frame) == 0:
            raise DataError("the table has no rows")
        if labelled is not None:
            frame = self.labelled(frame, labelled)
        if frame_filter is not None:
            frame = frame_filter(frame)
        return self._decode(frame, table, labelled is not None, on_error, self.verbose)

    def _decode(
        self, frame: pd.DataFrame, table: Table, labelled: bool, on_error: str | None, progress: bool
    ) -> DecodedTable:
        """Check ``frame`` (rows of ``table``) against the fitted schema and decode it with the processors."""
        if labelled:
            self.task.check_target(label_values(frame, self.label))
        self.check_columns(frame)
        self._warn_unknown_categories(frame)
        prepared = prepare(
            frame,
            self.processors,
            LoadContext(table.root, self.config.limits),
            on_error or self.config.on_error,
            progress=progress,
        )
        return DecodedTable(frame, prepared, table.root, table.source)

    def _warn_unknown_categories(self, frame: pd.DataFrame) -> None:
        for proc in self.processors.values():
            if isinstance(proc, TabularProcessor):
                for col, rows in proc.unknown_categories(frame).items():
                    log.warning(
                        "column '%s': %d rows hold categories not seen in training (rows %s%s); they are "
                        "encoded as 'unknown'",
                        col,
                        len(rows),
                        ", ".join(str(frame.index[r]) for r in rows[:10]),
                        " ..." if len(rows) > 10 else "",
                    )

    def loader(self, prepared: Prepared, batch_size: int | None = None) -> torch.utils.data.DataLoader:
        """Batches of ``prepared`` in order, as prediction uses them."""
        return make_loader(prepared, self.processors, batch_size or self.predict_batch_size, False)

    # ------------------------------------------------------------------------------------------- outputs
    def outputs(self, decoded: DecodedTable | Prepared) -> Any:
        """The task's outputs for every decoded row, in order (through ``backend`` when one is set)."""
        prepared = decoded.prepared if isinstance(decoded, DecodedTable) else decoded
        loader = self.loader(prepared)
        if self.backend is not None:
            return self.backend.predict(loader)
        return predict_outputs(self.model, loader, self.task)

    def chunks(
        self,
        data: Data,
        *,
        on_error: str | None = None,
        data_root: str | Path | None = None,
        labelled: str | None = None,
        chunk_rows: int | None = None,
    ) -> Iterator[tuple[DecodedTable, Any]]:
        """``data`` read, decoded and run through the network ``chunk_rows`` rows at a time (default
        :data:`polymodal.data.batches.DEFAULT_CHUNK_ROWS`): yields each chunk's decoded rows and their finite
        outputs (see :meth:`finite_outputs`), so that only one chunk's decoded items exist at a time. A table of one
        chunk gives what :meth:`prepare` + :meth:`outputs` give; the index of each chunk's frame continues the
        previous one's (a file's rows are numbered from 0 as a whole). ``labelled`` as in :meth:`prepare`: chunks
        whose rows all lack a label are skipped; a label column empty in the whole table is an error at the end.
        """
        root = data_root if data_root is not None else self.config.data_root
        pieces = iter_table(data, root, self.aligned_chunk_rows(chunk_rows))
        current = next(pieces, None)
        if current is None or len(current.frame) == 0:
            raise DataError("the table has no rows")
        following = next(pieces, None)
        bar = None
        if following is not None:  # several chunks: one bar over all of them (each chunk decodes quietly)
            bar = Progress(table_rows(data) or 0, "predicting", "rows", enabled=self.verbose)
        names = label_columns(self.label)
        filled = dict.fromkeys(names, False)
        position, yielded = 0, False
        try:
            while current is not None:
                frame = current.frame
                if labelled is not None:
                    if following is None and position == 0:  # the whole table: checked as prepare() checks it
                        frame = self.labelled(frame, labelled)
                    else:
                        for n in names:
                            if n in frame.columns and not frame[n].map(is_empty).all():
                                filled[n] = True
                        frame = labelled_rows(frame, self.label, labelled, require_values=False, first_row=position)
                if len(frame):
                    decoded = self._decode(frame, current, labelled is not None, on_error, self.verbose and bar is None)
                    prepared = decoded.prepared
                    # a chunk whose rows were all skipped gives nothing, unless it is the last one and none gave any
                    if len(prepared) or bar is None or (following is None and not yielded):
                        yielded = True
                        yield self.finite_outputs(decoded, self.outputs(decoded), on_error)
                position += len(current.frame)
                if bar is not None:
                    if position > bar.total:  # an estimate (or no count) of the rows ahead
                        bar.total = position
                    bar.update(position)
                current, following = following, next(pieces, None) if following is not None else None
        finally:
            if bar is not None:
                bar.close()
        # several chunks: a label column empty in all of them is known only now
        empty = [n for n, seen in filled.items() if not seen]
        if labelled is not None and bar is not None and empty:
            raise empty_label_error(empty[0], position)

    def aligned_chunk_rows(self, chunk_rows: int | None) -> int:
        """``chunk_rows`` (default :data:`DEFAULT_CHUNK_ROWS`) rounded up to a whole number of prediction batches
        when it holds at least one: a chunk's batches are then the whole table's, and so are the outputs of an
        encoder that is not exactly invariant to a batch's padding (the bidirectional ``text_rnn``)."""
        n = DEFAULT_CHUNK_ROWS if chunk_rows is None else int(chunk_rows)
        batch = self.predict_batch_size
        return -(-n // batch) * batch if n >= batch else n

    def finite_outputs(
        self, decoded: DecodedTable, outputs: Any, on_error: str | None = None
    ) -> tuple[DecodedTable, Any]:
        """``decoded`` and ``outputs`` without the rows whose outputs are NaN or inf, which never become a
        prediction: under ``on_error`` fail (the default) a :class:`DataError` names them; skip and missing drop
        them with a warning (a missing cell can be imputed, a missing output cannot)."""
        bad = nonfinite_rows(outputs)
        if len(bad) == 0:
            return decoded, outputs
        column = self.label if isinstance(self.label, str) else ", ".join(self.label)
        issues = [RowIssue(row_label(decoded.index[i]), column, NONFINITE_OUTPUT) for i in bad]
        if (on_error or self.config.on_error) == "fail":
            raise DataError(
                f"{len(bad)} of {len(outputs)} rows get no prediction:",
                issues,
                hint="Check these rows' values and the run directory's weights; --on-error skip drops such rows.",
            )
        log.warning(
            "skipped %d of %d rows whose model output is NaN or inf (rows %s%s)",
            len(bad),
            len(outputs),
            ", ".join(str(i.row) for i in issues[:10]),
            " ..." if len(bad) > 10 else "",
        )
        keep = np.setdiff1d(np.arange(len(outputs)), bad)
        kept = DecodedTable(decoded.frame, decoded.prepared.subset(keep), decoded.root, decoded.source)
        return kept, outputs[keep]

    def predict(
        self,
        data: Data,
        *,
        on_error: str | None = None,
        data_root: str | Path | None = None,
        return_scores: bool = False,
        chunk_rows: int | None = None,
    ) -> pd.Series | pd.DataFrame:
        """Predicted labels, values or texts indexed like the usable rows of ``data`` (see ``Predictor.predict``);
        decoded ``chunk_rows`` rows at a time (see :meth:`chunks`)."""
        if return_scores and not isinstance(self.task, GenerationTask):
            raise ConfigError("return_scores is for generation models; use predict_proba for class probabilities")
        parts = [
            self.predictions(decoded, outputs, return_scores)
            for decoded, outputs in self.chunks(data, on_error=on_error, data_root=data_root, chunk_rows=chunk_rows)
        ]
        return parts[0] if len(parts) == 1 else pd.concat(parts)

    def predictions(self, decoded: DecodedTable, outputs: Any, return_scores: bool = False) -> pd.Series | pd.DataFrame:
        """The predictions of ``decoded``'s rows from their ``outputs`` (see :meth:`predict`)."""
        if isinstance(self.task, MultiTask):
            return self.task.predictions(outputs, decoded.index)
        text = pd.Series(self.task.postprocess(outputs), index=decoded.index, name=self.single_label)
        if return_scores:
            return pd.DataFrame(
                {self.single_label: text, "log_prob": np.asarray(outputs.scores, dtype=np.float64)}, index=decoded.index
            )
        return text

    def predict_proba(
        self,
        data: Data,
        *,
        on_error: str | None = None,
        data_root: str | Path | None = None,
        chunk_rows: int | None = None,
    ) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Class probabilities, one column per class (classification only); for a multi-label model, each tag's
        own probability, one column per tag (a row's need not sum to 1). A multi-task model gives a dict:
        classification target → its DataFrame of class probabilities. Decoded ``chunk_rows`` rows at a time."""
        self.check_proba()
        parts = [
            self.probabilities(decoded, outputs)
            for decoded, outputs in self.chunks(data, on_error=on_error, data_root=data_root, chunk_rows=chunk_rows)
        ]
        if len(parts) == 1:
            return parts[0]
        if isinstance(self.task, MultiTask):
            return {name: pd.concat([cast(dict, part)[name] for part in parts]) for name in cast(dict, parts[0])}
        return pd.concat(cast(list[pd.DataFrame], parts))

    def check_proba(self) -> None:
        """Raise unless this model gives probabilities (classification, multi-label, a multi-task model with a
        classification target), before any table is read."""
        if isinstance(self.task, MultiTask):
            if not self.task.classification_targets():
                raise PolymodalError(
                    "predict_proba is for classification targets; none of this model's targets "
                    f"({', '.join(self.task.names)}) is one"
                )
            return
        if self.problem_type in ("regression", "generation"):
            raise PolymodalError(
                f"predict_proba is for classification; this is a {self.problem_type} model"
                + (
                    " (predict(..., return_scores=True) gives each text's log-probability)"
                    if self.problem_type == "generation"
                    else ""
                )
            )

    def probabilities(self, decoded: DecodedTable, outputs: Any) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """The class probabilities of ``decoded``'s rows from their ``outputs`` (see :meth:`predict_proba`)."""
        if isinstance(self.task, MultiTask):
            out = {}
            for t in self.task.classification_targets():
                sub = cast(ClassificationTask, t.task)
                proba = sub.predict_proba(outputs[:, t.outputs])
                out[t.name] = pd.DataFrame(proba, index=decoded.index, columns=list(sub.classes))
            return out
        # binary and multiclass models have a classification task; multilabel ones the same two members
        task = cast(ClassificationTask | MultilabelTask, self.task)
        return pd.DataFrame(task.predict_proba(outputs), index=decoded.index, columns=list(task.classes))

    def score(
        self, data: Data, *, on_error: str | None = None, data_root: str | Path | None = None, what: str = "evaluation"
    ) -> tuple[dict[str, Any], DecodedTable, Any]:
        """Metrics on the labelled rows of ``data``, with the decoded table and the outputs they came from."""
        decoded = self.prepare(data, on_error=on_error, data_root=data_root, labelled=what)
        decoded, outputs = self.finite_outputs(decoded, self.outputs(decoded), on_error)
        metrics: dict[str, Any] = self.task.metrics(decoded.labels(self.label), outputs)
        metrics["rows"] = float(len(decoded.prepared))
        return metrics, decoded, outputs

    def evaluate(
        self,
        data: Data,
        *,
        on_error: str | None = None,
        data_root: str | Path | None = None,
        chunk_rows: int | None = None,
    ) -> dict[str, Any]:
        """Metrics on the labelled rows of ``data`` (rows with an empty label are left out), decoded ``chunk_rows``
        rows at a time: only the labels and outputs of all rows are kept, which the metrics need."""
        labels, outputs = [], []
        for decoded, out in self.chunks(
            data, on_error=on_error, data_root=data_root, labelled="evaluation", chunk_rows=chunk_rows
        ):
            labels.append(decoded.labels(self.label))
            outputs.append(out)
        y = labels[0] if len(labels) == 1 else pd.concat(labels, ignore_index=True)
        metrics: dict[str, Any] = self.task.metrics(y, join_outputs(self.task, outputs))
        metrics["rows"] = float(len(y))
        return metrics

    @contextlib.contextmanager
    def decoding(self, decoding: DecodingConfig | dict[str, Any] | None) -> Iterator[None]:
        """Decode with ``decoding`` (overrides of the fitted ``task.generation.decoding``) inside the block."""
        if decoding is None:
            yield
            return
        task = self.task
        if not isinstance(task, GenerationTask):
            raise ConfigError(f"decoding options are for generation models; this is a {task.problem_type} model")
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

    # --------------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write the run directory atomically (see :mod:`polymodal.rundir`). Returns its path.

        In a multi-process (DDP) run only rank 0 writes: every rank runs the same program and would otherwise
        replace the same folder at once."""
        path = Path(path)
        if not is_main_process():
            log.debug("not saving %s: this is not rank 0 of a multi-process run", path)
            return path
        with writing(path, overwrite=overwrite) as tmp:
            write_json(
                tmp / "polymodal.json",
                {
                    "format": FORMAT_VERSION,
                    "polymodal_version": __version__,
                    "label": self.label,
                    "problem_type": self.task.problem_type,
                    "modalities": [{"name": m.name, "kind": m.kind, "columns": m.columns} for m in self.modalities],
                },
            )
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
                write_json(
                    tmp / "metrics.json",
                    {
                        "validation": r.validation,
                        "best_epoch": r.best_epoch,
                        "epochs_run": r.epochs_run,
                        "fit_seconds": r.fit_seconds,
                        "train_seconds": r.train_seconds,
                        "stopped_early": r.stopped_early,
                        "time_limited": r.time_limited,
                        "parameters": count_parameters(self.model),
                    },
                )
                write_history(tmp / "training_log.csv", r.history)
            if self.leaderboard is not None:
                self.leaderboard.to_csv(tmp / LEADERBOARD, index=False)
        if self.fit_result is not None:  # the tracked run (training.logger: mlflow) stores the run directory
            log_run_directory(self.fit_result.tracking, path)
        return path

    @classmethod
    def load(cls, path: str | Path, verbose: bool = True) -> FittedPipeline:
        """Rebuild a fitted pipeline from a run directory; its outputs are identical to the saved one's (eager
        torch; ``Predictor.load(..., backend=)`` sets an ONNX Runtime backend on it)."""
        return read_run(path, lambda files: cls._from_files(files, verbose))

    @classmethod
    def _from_files(cls, files: RunFiles, verbose: bool) -> FittedPipeline:
        """Build the pipeline from one consistent, verified read of a run directory; anything in it that does not
        fit is a :class:`RunDirError` naming the file."""
        meta = files.json("polymodal.json")
        with files.blame("config.yaml"):
            # a run's config is read as a user's config file is: bounded (no alias bomb), no Python tags
            config = PolymodalConfig.from_any(parse_yaml(files.text("config.yaml"), "config.yaml"))
        with files.blame("schema.json"):
            schema = Schema.from_dict(files.json("schema.json"))
            modalities, processors = build_processors(schema, config)
        states = files.json("processors.json")
        tensors = files.weights("processors.safetensors") if files.has("processors.safetensors") else {}
        for name, proc in processors.items():
            with files.blame("processors.json", f"does not hold a usable state for '{name}'"):
                proc.set_state(
                    states[name], {k.split("/", 1)[1]: t for k, t in tensors.items() if k.split("/", 1)[0] == name}
                )
            if proc.has_assets:
                folder = files.folder(f"{BACKBONES}/{name}")
                with files.blame(f"{BACKBONES}/{name}"):
                    proc.load_assets(folder)
        with files.blame("polymodal.json"):
            task = build_task(meta["problem_type"], config.task)
            label = meta["label"]
        with files.blame("task.json"):
            task.set_state(files.json("task.json"))
        with files.blame("config.yaml", "describes a network that cannot be built"):
            model = build_model(config, modalities, processors, task)
        weights = files.weights("model.safetensors")
        with files.blame("model.safetensors", "does not fit the network its config.yaml describes"):
            model.load_state_dict(weights)
        model.eval()
        fit_result = None
        if files.has("metrics.json"):
            m = files.json("metrics.json")
            with files.blame("metrics.json"):
                fit_result = FitResult(
                    m["best_epoch"],
                    m["epochs_run"],
                    m["fit_seconds"],
                    m["stopped_early"],
                    m["validation"],
                    # (absent from runs saved before they were recorded)
                    train_seconds=m.get("train_seconds", 0.0),
                    time_limited=m.get("time_limited", False),
                )
        pipeline = cls(label, config, schema, modalities, processors, task, model, fit_result, verbose)
        if files.has(LEADERBOARD):
            with files.blame(LEADERBOARD):
                pipeline.leaderboard = pd.read_csv(io.BytesIO(files.raw(LEADERBOARD)))
        return pipeline

    def __repr__(self) -> str:
        return (
            f"FittedPipeline(label={self.label!r}, problem_type={self.problem_type!r}, "
            f"modalities={[m.name for m in self.modalities]}, fusion={self.config.fusion.name!r})"
        )


class HasPipeline(Protocol):
    """Anything that carries a fitted pipeline (a :class:`~polymodal.api.Predictor`; None before fit)."""

    pipeline: FittedPipeline | None


#: What the consumers of a fitted model accept: the pipeline, a fitted Predictor, or a run directory.
PipelineSource = FittedPipeline | HasPipeline | str | Path


def as_pipeline(model: PipelineSource, verbose: bool = True) -> FittedPipeline:
    """The fitted pipeline behind ``model``: a :class:`FittedPipeline`, anything with a ``pipeline`` attribute
    (a fitted :class:`~polymodal.api.Predictor`), or a run directory path."""
    if isinstance(model, FittedPipeline):
        return model
    if isinstance(model, (str, Path)):
        return FittedPipeline.load(model, verbose=verbose)
    pipeline = getattr(model, "pipeline", None)
    if isinstance(pipeline, FittedPipeline):
        return pipeline
    if hasattr(model, "pipeline"):
        raise NotFittedError("this Predictor has not been fitted; call fit() or Predictor.load() first")
    raise TypeError(f"expected a fitted Predictor, a FittedPipeline or a run directory, not {type(model).__name__}")
