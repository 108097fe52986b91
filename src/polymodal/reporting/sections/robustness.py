"""The robustness sweep (``polymodal evaluate --robustness``): the score with each modality corrupted or missing."""

from __future__ import annotations

from ...registry import register
from ..blocks import Figure, Note, Section, Table
from ..context import ReportContext, fmt
from . import PREDICTIVE, SECTIONS, ReportSection

#: What the run summary suggests when there is no sweep (the report looks for RUN/robustness/robustness.json).
ROBUSTNESS_COMMAND = "polymodal evaluate RUN TEST.csv --robustness --out RUN/robustness"


@register(SECTIONS, "robustness")
class Robustness(ReportSection):
    title = "Robustness"
    order = 90
    problem_types = PREDICTIVE

    def build(self, ctx: ReportContext) -> Section | None:
        rep = ctx.robustness
        if rep is None:  # left out; the run summary says so in one line, with the command that makes a sweep
            return None
        better = "higher" if rep.higher_is_better else "lower"
        sec = self.section(
            f"{rep.metric} ({better} is better) on {rep.rows} rows with one modality at a time corrupted at increasing "
            f"severity, or missing altogether (from {ctx.robustness_source}). Relative robustness: the area under the "
            f"curve; effective robustness: the drop against the baseline ({rep.baseline})."
        )
        ours = {m.name for m in ctx.pipeline.modalities}
        if set(rep.kinds) != ours:
            sec.blocks.append(
                Note(
                    f"This sweep's modalities ({', '.join(rep.kinds)}) differ from this model's "
                    f"({', '.join(sorted(ours))}): it may come from another run."
                )
            )
        rows = [
            [
                r["modality"],
                r["corruption"],
                r["levels"],
                fmt(r["clean"]),
                fmt(r["most_severe"]),
                fmt(r["missing"]),
                fmt(r["without"]),
                fmt(r["relative_robustness"]),
                fmt(r["effective_robustness"]),
            ]
            for _, r in rep.summary_frame().iterrows()
        ]
        sec.blocks.append(
            Table(
                [
                    "modality",
                    "corruption",
                    "levels",
                    "clean",
                    "most severe",
                    "missing",
                    "best without",
                    "relative",
                    "effective",
                ],
                rows,
                numeric=[False, False, False] + [True] * 6,
            )
        )
        if rep.reference:
            sec.blocks.append(
                Note(
                    f"Best without: the score of the best model that ignores the modality ({rep.reference_name}). "
                    "A model that degrades gracefully stays at or above it whatever happens to that modality."
                )
            )
        if rep.weights:
            sec.blocks.append(
                Note(
                    "Per-row fusion weights over the modalities for a few test rows, clean → with one modality "
                    "damaged (its most severe level, or missing): which modality each row trusted."
                )
            )
            sec.blocks.append(
                Table(
                    ["row", "damaged", *rep.kinds],
                    [
                        [
                            str(w.row),
                            f"{w.modality}: {w.corruption}" + ("" if w.level != w.level else f" {w.level:g}"),
                            *[f"{w.clean.get(m, 0.0):.2f} → {w.corrupted.get(m, 0.0):.2f}" for m in rep.kinds],
                        ]
                        for w in rep.weights
                    ],
                    numeric=[False] * (2 + len(rep.kinds)),
                )
            )
        for m in rep.modalities:
            ctx.progress(f"robustness plot: {m}")
            sec.blocks.append(
                Figure(
                    f"robustness: {m}",
                    rep.plot(m),
                    f"{rep.metric} of the model as {m} is corrupted at increasing severity",
                )
            )
        return sec
