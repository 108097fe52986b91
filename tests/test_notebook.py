"""What a notebook shows: the predictor's HTML summary, tables as DataFrames and plots as matplotlib figures."""

from __future__ import annotations

import sys

import pandas as pd
from matplotlib.figure import Figure

from polymodal import Predictor
from polymodal.data import progress


def test_repr_html_of_an_unfitted_predictor():
    text = Predictor("label<b>")._repr_html_()
    assert "not fitted" in text and "label&lt;b&gt;" in text  # escaped


def test_repr_html_shows_schema_fit_summary_and_metrics(fitted):
    text = fitted._repr_html_()
    summary = fitted.fit_summary()
    for column in fitted.pipeline.schema.columns:  # the schema: every column with its kind
        assert f"<td>{column.name}</td><td>{column.kind.value}</td>" in text
    for metric in summary["validation"]:
        assert f"<td>{metric}</td>" in text
    assert "<td>epochs run</td>" in text and f"<td>{summary['epochs_run']}</td>" in text
    for name, modality in summary["modalities"].items():
        assert f"<td>{name}</td><td>{modality['kind']}</td>" in text and modality["encoder"] in text


def test_repr_html_of_a_loaded_run(run_dir):
    text = Predictor.load(run_dir, verbose=False)._repr_html_()
    assert "<h4>Schema</h4>" in text and "<h4>Validation metrics (best epoch)</h4>" in text


def test_history_is_a_frame_and_training_plot_a_figure(fitted):
    history = fitted.history()
    assert isinstance(history, pd.DataFrame)
    assert len(history) == fitted.fit_result.epochs_run
    assert {"epoch", "train_loss", "val_loss"} <= set(history.columns)
    fig = fitted.plot_training()
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[0].lines  # curves were drawn


def test_leaderboard_and_importance_are_frames_and_figures(fitted, test_csv):
    board = fitted.leaderboard(test_csv)
    assert isinstance(board, pd.DataFrame) and len(board) >= 1
    importance = fitted.importance(test_csv, methods=["permutation"], n_bootstrap=20)
    assert isinstance(importance.to_frame(), pd.DataFrame)
    assert "<table" in importance._repr_html_()
    assert isinstance(importance.plot(), Figure)
    explanation = fitted.explain(pd.read_csv(test_csv).head(1), data_root=test_csv.parent)[0]
    assert isinstance(explanation.plot(), Figure)


def test_progress_draws_live_bars_in_a_jupyter_kernel(monkeypatch):
    """In a kernel the streams are no terminals, yet tqdm.auto draws widgets there: bars, not log lines."""

    class KernelStream:  # what ipykernel puts in sys.stdout (its module is what counts)
        def write(self, text: str) -> int:
            return len(text)

        def flush(self) -> None:
            pass

    KernelStream.__module__ = "ipykernel.iostream"
    monkeypatch.setattr(sys, "stdout", KernelStream())
    assert progress.live_bars()
    p = progress.Progress(10, "decoding", "rows", min_bar=1000)
    assert p.live and not p.lines
    p.close()
    assert progress.tqdm.__module__.startswith("tqdm")  # tqdm.auto: the notebook widget when ipywidgets is there
