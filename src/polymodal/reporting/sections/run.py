"""What was trained: the run summary, the schema (columns, kinds, encoders, fusion) and the training curves."""

from __future__ import annotations

from typing import Any

from ...registry import register
from .. import plots
from ..blocks import Figure, Metric, Metrics, Note, Section, Table
from ..context import ReportContext, fmt
from . import PREDICTIVE, SECTIONS, ReportSection
from .robustness import ROBUSTNESS_COMMAND


@register(SECTIONS, "summary")
class Summary(ReportSection):
    title = "Run summary"
    order = 10

    def build(self, ctx: ReportContext) -> Section:
        s, fit = ctx.summary, ctx.summary.fit
        sec = self.section()
        items = [
            Metric("problem", s.problem_type),
            Metric("label", s.label),
            Metric("fusion", s.fusion),
            Metric("parameters", fmt(s.parameters)),
        ]
        if fit:
            items += [epochs_card(fit, s.monitor[0]), Metric("fit time", f"{fit['fit_seconds']:.0f} s")]
        sec.blocks.append(Metrics(items))
        rows = [
            ["run directory", str(s.run_dir) if s.run_dir else "(in memory, not saved)"],
            ["test table", f"{ctx.scored.source} ({int(ctx.scored.metrics['rows'])} usable labelled rows)"],
        ]
        if s.classes is not None:
            rows.append(["tags" if s.problem_type == "multilabel" else "classes", ", ".join(map(str, s.classes))])
        rows.append(["fusion", s.fusion + " (" + ", ".join(f"{k}={v}" for k, v in s.fusion_params.items()) + ")"])
        if s.validation:
            rows.append(
                [
                    "validation (kept epoch)",
                    ", ".join(f"{k.removeprefix('val_')} {fmt(v)}" for k, v in s.validation.items()),
                ]
            )
        if ctx.robustness is None and s.problem_type in PREDICTIVE:  # (the robustness section is left out)
            rows.append(["robustness", f"no sweep; run `{ROBUSTNESS_COMMAND}` and make the report again"])
        sec.blocks.append(Table(["", ""], rows))
        return sec


def epochs_card(fit: dict[str, Any], monitor: str) -> Metric:
    """ "best N of M": the kept epoch (best validation ``monitor``) of the M epochs run; the line under it says
    whether training stopped early (before the limit), at the limit, or at the time limit."""
    best, run, limit = fit["best_epoch"] + 1, fit["epochs_run"], fit.get("max_epochs")
    if limit is not None and run >= limit:
        how = f"ran all {limit} epochs (the maximum)"
    elif fit["stopped_early"]:
        how = "stopped early" + (f" (max {limit})" if limit is not None else "")
    elif limit is not None:
        how = f"stopped by the time limit (max {limit})"
    else:
        how = f"{run} epochs run"
    return Metric("epochs", f"best {best} of {run}", f"kept: best validation {monitor}; {how}")


@register(SECTIONS, "schema")
class SchemaSection(ReportSection):
    title = "Schema"
    order = 20

    def build(self, ctx: ReportContext) -> Section:
        s = ctx.summary
        sec = self.section(
            f"How each column was read, and the encoder of its modality: the one chosen for that "
            f"column (encoders.<column>) or else for its kind (encoders.<kind>). Image, audio and text "
            f"columns are one modality each; numeric and category columns together form the tabular "
            f"modality. The modalities' encodings are combined by '{s.fusion}' fusion."
        )
        sec.blocks.append(
            Table(
                ["column", "kind", "modality", "encoder", "why this kind"],
                [[c.name, c.kind, c.modality, c.encoder, c.reason] for c in s.columns]
                + [[s.label, "target", "—", s.problem_type, "the label"]],
            )
        )
        return sec


@register(SECTIONS, "training")
class Training(ReportSection):
    title = "Training curves"
    order = 30

    def build(self, ctx: ReportContext) -> Section:
        metric, mode = ctx.summary.monitor
        sec = self.section(
            f"Loss and validation {metric} after each epoch; the model keeps the weights of the epoch "
            f"with the best validation {metric} (dashed line)."
        )
        h = ctx.history
        if h is None or "epoch" not in h or h.empty:
            sec.blocks.append(
                Note(
                    "No training history is saved with this run (training_log.csv is missing), so there are no curves."
                )
            )
            return sec
        best = ctx.summary.fit.get("best_epoch")
        fig = plots.training_curves(h, metric, mode, best)
        sec.blocks.append(
            Figure(
                "training curves",
                plots.to_png(fig),
                f"training and validation loss and validation {metric} over {len(h)} epochs",
            )
        )
        return sec
