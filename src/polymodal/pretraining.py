"""``polymodal pretrain``: self-supervised pre-training of the encoders on unlabelled rows.

The table's rows need no label: each row's position becomes its id (as for retrieval), and the fitting steps train
the "crossmodal" network (:mod:`polymodal.crossmodal`, loss in :mod:`polymodal.tasks.pretrain`). The result is an
ordinary run directory (config.yaml, processors.json, model.safetensors: no pickle) that a later fit names as
``training.init`` (``fit --init``, ``Predictor(init=...)``) to start its encoders from (:mod:`polymodal.warmstart`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .components import check_config
from .config import PolymodalConfig
from .data.readers import Table, read_table
from .errors import ConfigError, SchemaError
from .fitting import fit_pipeline, fit_schema
from .pipeline import Data, FittedPipeline
from .tasks.retrieval import PAIR_COLUMN


def pretrain_config(config: PolymodalConfig | dict[str, Any] | str | Path | None = None) -> PolymodalConfig:
    """``config`` (a config, its dict or a YAML path) made a pre-training config: problem type ``pretrain``,
    no modality dropout (every pair of a row's modalities is a training signal; the masked-modality term already
    hides each modality in turn)."""
    cfg = config.model_copy(deep=True) if isinstance(config, PolymodalConfig) else PolymodalConfig.from_any(config)
    if cfg.task.problem_type not in (None, "pretrain"):
        raise ConfigError(
            f"the config sets problem_type '{cfg.task.problem_type}'; pre-training has no label and uses its own "
            "(pretrain): remove task.problem_type, or use `polymodal fit` for a labelled model"
        )
    if cfg.training.init is not None:
        raise ConfigError("training.init is for fits that start from a pre-trained run; remove it to pre-train")
    cfg.task.problem_type = "pretrain"
    cfg.training.modality_dropout = 0.0
    check_config(cfg)
    return cfg


def unlabelled_table(data: Data, cfg: PolymodalConfig, data_root: str | Path | None = None) -> Table:
    """``data`` with each row's position as its (unused) label; refuses a table with fewer than two modalities."""
    table = read_table(data, data_root if data_root is not None else cfg.data_root)
    if PAIR_COLUMN in table.frame.columns:
        raise SchemaError(f"the table has a column named '{PAIR_COLUMN}', which pre-training uses; rename it")
    frame = table.frame.copy()
    frame[PAIR_COLUMN] = np.arange(len(frame))
    schema = fit_schema(frame, PAIR_COLUMN, cfg)
    modalities = schema.modalities()
    if len(modalities) < 2:
        raise ConfigError(
            "self-supervised pre-training contrasts a row's modalities with each other, and this table has "
            f"{len(modalities)} ({', '.join(m.name for m in modalities) or 'none'}); give it at least two input "
            "columns of different modalities (e.g. an image and an audio column), or ignore fewer columns"
        )
    return Table(frame, table.root, table.source)


def pretrain(
    data: Data,
    out: str | Path | None = None,
    *,
    config: PolymodalConfig | dict[str, Any] | str | Path | None = None,
    data_root: str | Path | None = None,
    seed: int | None = None,
    verbose: bool = True,
) -> FittedPipeline:
    """Pre-train every modality's encoder on the (unlabelled) rows of ``data``; save the run to ``out`` if given.

    Columns named in ``config.ignore`` (e.g. a label column the table happens to have) are left out. The returned
    pipeline's ``fit_result.validation`` holds the cross-modal retrieval metrics on the held-out rows
    (``val_recall@1``, ``val_mrr``: random is about 1 / rows) and ``val_masked_cosine``.
    """
    cfg = pretrain_config(config)
    if seed is not None:
        cfg.training.seed = seed
    table = unlabelled_table(data, cfg, data_root)
    pipeline = fit_pipeline(table, PAIR_COLUMN, cfg, verbose=verbose).pipeline
    if out is not None:
        pipeline.save(out)
    return pipeline
