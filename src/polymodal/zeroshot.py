"""Zero-shot classification with an aligned (retrieval) model: rows go to the label whose text prompt embeds
closest to them, for label names the model was never trained on (CLIP; Radford et al. 2021).

The model is a two-tower retrieval run (:mod:`polymodal.towers`; its encoders may be ``clip_text`` /
``clip_image``) with one text column alone on one side: each label's prompt (``prompt.format(label=...)``) is
embedded by that tower, the table's rows by the other, and each row takes the label of highest cosine similarity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data.readers import Table, read_table
from .errors import ConfigError
from .pipeline import Data, FittedPipeline
from .retrieval import embed, retrieval_task, side_columns
from .schema import ColumnKind
from .tasks.retrieval import SIDES

DEFAULT_PROMPT = "a photo of a {label}"


@dataclass
class ZeroShotResult:
    """``predictions``: the chosen label per row (indexed like the table); ``scores``: the cosine similarity of
    every row (index) to every label (columns); ``prompts``: the texts the labels were embedded as."""

    predictions: pd.Series
    scores: pd.DataFrame
    prompts: list[str]


def text_side(pipeline: FittedPipeline) -> tuple[str, str]:
    """The side whose only column is a text column, and that column."""
    kinds = pipeline.schema.kinds()
    for side in SIDES:
        cols = side_columns(pipeline.config, side)
        if len(cols) == 1 and kinds.get(cols[0]) is ColumnKind.TEXT:
            return side, cols[0]
    raise ConfigError(
        "zero-shot classification embeds the label prompts with a text tower, and neither side of this retrieval "
        "model is a single text column; train one with a caption column alone on a side (e.g. --query caption "
        "--target image)"
    )


def prompts_for(labels: list[str], prompt: str) -> list[str]:
    """Each label put into ``prompt`` (which must hold ``{label}``)."""
    names = [str(label) for label in labels]
    if len(names) < 2:
        raise ConfigError(f"zero-shot classification needs at least two labels, not {len(names)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"the labels repeat a name: {', '.join(names)}")
    if "{label}" not in prompt:
        raise ConfigError(f"the prompt must contain {{label}} where each label goes, e.g. {DEFAULT_PROMPT!r}")
    try:
        return [prompt.format(label=name) for name in names]
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"the prompt {prompt!r} has braces other than {{label}} ({e}); double them ({{{{ }}}}) to keep them"
        ) from None


def zero_shot(
    pipeline: FittedPipeline,
    data: Data,
    labels: list[str],
    prompt: str = DEFAULT_PROMPT,
    data_root: str | Path | None = None,
) -> ZeroShotResult:
    """Classify the rows of ``data`` (the non-text side's columns) into ``labels`` by their prompts' embeddings."""
    retrieval_task(pipeline)
    side, column = text_side(pipeline)
    other = "target" if side == "query" else "query"
    texts = prompts_for(list(labels), prompt)
    table = read_table(data, data_root if data_root is not None else pipeline.config.data_root)
    prompts = Table(pd.DataFrame({column: texts}), table.root, "label prompts")
    label_vectors = embed(pipeline, prompts, side, data_root=table.root)
    row_vectors = embed(pipeline, table, other, data_root=table.root)
    sims = row_vectors @ label_vectors.T
    names = [str(label) for label in labels]
    scores = pd.DataFrame(sims, index=table.frame.index, columns=names)
    predictions = pd.Series(np.asarray(names, dtype=object)[np.argmax(sims, axis=1)], index=table.frame.index)
    return ZeroShotResult(predictions.rename("prediction"), scores, texts)
