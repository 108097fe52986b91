"""Build the report: gather the context once, build each section that applies, render, write atomically."""

from __future__ import annotations

import datetime as _dt
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..evaluation.robustness import RobustnessReport
from ..io import atomic_file
from ..pipeline import FittedPipeline, PipelineSource, as_pipeline
from ..tasks.multitask import MultiTask
from ..version import __version__
from .blocks import Report
from .context import ReportContext, ReportOptions, find_robustness, read_history, score, summarise, target_context
from .render import render
from .sections import sections_for, target_sections

Progress = Callable[[str], None]


def _load(model: PipelineSource, verbose: bool) -> tuple[FittedPipeline, Path | None]:
    if isinstance(model, (str, Path)):
        return as_pipeline(model, verbose=verbose), Path(model)
    return as_pipeline(model), None


def build_report(
    model: PipelineSource,
    data: Any,
    *,
    robustness: RobustnessReport | str | Path | None = None,
    options: ReportOptions | None = None,
    data_root: str | Path | None = None,
    on_error: str | None = None,
    progress: Progress | None = None,
) -> Report:
    """Gather everything and build the sections (no file is written; see :func:`report`).

    Args:
        model: a fitted :class:`~polymodal.Predictor`, or a run directory from ``polymodal fit``.
        data: the labelled test table (path, DataFrame or Table).
        robustness: a robustness sweep (a report, or its robustness.json); when None, a run directory's
            ``robustness.json`` or ``robustness/robustness.json`` is used if there is one.
        options: what to compute (examples, bootstrap resamples, explanation method); defaults when None.
        data_root: folder relative file paths in ``data`` resolve against (default: the table's folder).
        on_error: bad rows: "fail", "skip" or "missing" (default: the model's setting).
        progress: called with a short message before each slow step.
    """
    say = progress or (lambda msg: None)
    options = options or ReportOptions()
    if options.n_examples:  # a misspelt method fails now, not after the slow parts
        from ..explain import METHODS

        if options.explain_method not in METHODS:
            raise ConfigError(
                f"unknown explanation method '{options.explain_method}'; choose one of: {', '.join(METHODS.names())}"
            )
    pipeline, run_dir = _load(model, verbose=progress is not None)
    rob, rob_source = find_robustness(robustness, run_dir)
    say(f"scoring {data if not hasattr(data, 'shape') else 'the table'}")
    ctx = ReportContext(
        pipeline=pipeline,
        summary=summarise(pipeline, run_dir),
        history=read_history(pipeline, run_dir),
        scored=score(pipeline, data, data_root, on_error),
        robustness=rob,
        robustness_source=rob_source,
        options=options,
        progress=say,
    )
    sections = []
    chosen = sections_for(pipeline.task.problem_type)
    for i, sec in enumerate(chosen, 1):
        say(f"[{i}/{len(chosen)}] {sec.title}")
        built = sec.build(ctx)
        if built is not None:
            sections.append(built)
    if isinstance(pipeline.task, MultiTask):  # each target's own sections, after the shared ones
        for t in pipeline.task.targets:
            sub = target_context(ctx, t.name)
            for sec in target_sections(t.task.problem_type):
                say(f"{t.name}: {sec.title}")
                built = sec.build(sub)
                if built is not None:
                    anchor = re.sub(r"[^A-Za-z0-9_-]+", "-", t.name)
                    built.id, built.title = f"{anchor}-{built.id}", f"{t.name}: {built.title}"
                    sections.append(built)
    s = ctx.summary
    where = f"run {run_dir}" if run_dir is not None else "a model in memory"
    return Report(
        title=f"polymodal report: {s.label} ({s.problem_type})",
        subtitle=f"{where} · test table {ctx.scored.source} · {int(ctx.scored.metrics['rows'])} rows · "
        f"{', '.join(m.name for m in pipeline.modalities)} · {s.fusion} fusion",
        sections=sections,
        generated=f"generated {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        version=__version__,
    )


def report(
    model: PipelineSource,
    data: Any,
    out: str | Path,
    *,
    robustness: RobustnessReport | str | Path | None = None,
    n_examples: int = 6,
    n_bootstrap: int = 200,
    explain_method: str = "occlusion",
    seed: int = 0,
    data_root: str | Path | None = None,
    on_error: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write one self-contained HTML report of a model on a labelled test table; returns its path.

    The page holds the run summary and schema, training curves, test metrics, and by problem type the confusion
    matrix, per-class precision/recall/F1, calibration, ROC/PR curves (binary) or residual plots (regression); the
    robustness sweep when there is one; modality importance with bootstrap confidence intervals; and a gallery of
    explained test rows, right and wrong. Images are embedded, CSS is inline, nothing is fetched from elsewhere.
    The file is written atomically: on any error nothing is left at ``out``.

    Args:
        model: a fitted :class:`~polymodal.Predictor`, or a run directory.
        data: the labelled test table.
        out: the HTML file to write.
        robustness: a robustness sweep or its robustness.json (default: one saved in the run directory, if any).
        n_examples: explained examples in the gallery (0: none).
        n_bootstrap: bootstrap resamples for the importance intervals (0: no importance section).
        explain_method: "occlusion" or "integrated_gradients".
        seed: seeds the bootstrap and the choice of gallery rows.
        data_root: as in :meth:`Predictor.evaluate`.
        on_error: as in :meth:`Predictor.evaluate`.
        progress: called with a short message before each slow step.

    Example:
        >>> import polymodal
        >>> polymodal.report("runs/x", "data/test.csv", "report.html")
    """
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{out} is a folder; give the report a file name, e.g. {out / 'report.html'}")
    start = time.perf_counter()
    rep = build_report(
        model,
        data,
        robustness=robustness,
        data_root=data_root,
        on_error=on_error,
        progress=progress,
        options=ReportOptions(n_examples=n_examples, n_bootstrap=n_bootstrap, explain_method=explain_method, seed=seed),
    )
    html = render(rep)
    with atomic_file(out, "w", encoding="utf-8") as f:
        f.write(html)
    if progress:
        progress(f"wrote {out} ({len(html) / 1e6:.1f} MB) in {time.perf_counter() - start:.0f} s")
    return out
