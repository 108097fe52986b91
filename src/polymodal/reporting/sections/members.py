"""An ensemble's members (the quality preset): each member's validation and test scores and its weight, and what the
classical members learn from (their importance per input column)."""

from __future__ import annotations

from typing import cast

from ...ensemble import EnsembleModel, is_ensemble, member_metrics
from ...members import Member
from ...registry import register
from ..blocks import Note, Section, Table
from ..context import ReportContext, fmt
from . import PREDICTIVE, SECTIONS, ReportSection


@register(SECTIONS, "members")
class Members(ReportSection):
    title = "Ensemble members"
    order = 45
    problem_types = PREDICTIVE

    def build(self, ctx: ReportContext) -> Section | None:
        pipeline = ctx.pipeline
        board = pipeline.leaderboard
        if board is None or not is_ensemble(pipeline.model):  # a single network: nothing to list
            return None
        metric = pipeline.task.monitor[0]
        sec = self.section(
            f"The model is a weighted ensemble (greedy selection on validation {metric}); classification averages the "
            "members' probabilities, regression their predictions. Weight 0: trained but not selected. Members "
            "that failed or were skipped for the time limit have no scores."
        )
        ctx.progress("scoring each ensemble member on the test table")
        decoded = pipeline.prepare(ctx.scored.frame, data_root=ctx.scored.root)
        tests = member_metrics(
            pipeline.model,
            pipeline.loader(decoded.prepared),
            pipeline.task,
            decoded.labels(pipeline.label),
        )
        tests["ensemble"] = ctx.scored.metrics
        rows = []
        for r in board.to_dict("records"):
            name = str(r["member"])
            fusion = r.get("fusion")
            rows.append(
                [
                    name,
                    str(r.get("kind", "")),
                    str(r.get("modalities", "")),
                    fusion if isinstance(fusion, str) else "",
                    fmt(r.get("weight", float("nan"))),
                    fmt(r.get("score_val", float("nan"))),
                    fmt(tests.get(name, {}).get(metric, float("nan"))),
                    str(r.get("status", "")),
                ]
            )
        sec.blocks.append(
            Table(
                [
                    "member",
                    "kind",
                    "modalities",
                    "fusion",
                    "weight",
                    f"validation {metric}",
                    f"test {metric}",
                    "status",
                ],
                rows,
                numeric=[False, False, False, False, True, True, True, False],
            )
        )
        ensemble = cast(EnsembleModel, pipeline.model)
        importance = {
            name: imp
            for name, member in ensemble.members.items()
            if isinstance(member, Member) and (imp := member.feature_importance())
        }
        if importance:
            columns = sorted({c for imp in importance.values() for c in imp})
            sec.blocks.append(
                Note(
                    "What the classical members learn from: each input column's share of a member's importance "
                    "(gradient boosting: the split gain of the column's features; linear: mean |coefficient × the "
                    "feature's spread|)."
                )
            )
            sec.blocks.append(
                Table(
                    ["member", *columns],
                    [[n, *(fmt(imp.get(c, 0.0)) for c in columns)] for n, imp in importance.items()],
                    numeric=[False, *([True] * len(columns))],
                )
            )
        if len(decoded.prepared) != len(ctx.scored.frame):
            sec.blocks.append(Note("Some test rows could not be decoded again; member scores use the others."))
        return sec
