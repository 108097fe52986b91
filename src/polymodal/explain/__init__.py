"""Explanations of a fitted model: per-example attributions, the fusion's modality weights, modality importance.

    from polymodal.explain import explain, modality_importance, plot_explanation, plot_importance
    explanations = explain(predictor, "rows.csv", method="occlusion")       # or "integrated_gradients"
    result = modality_importance(predictor, "test.csv")                    # drop-one and permutation, with CIs

Modules: ``attributions`` (occlusion, integrated gradients, mapped back to pixels / spectrogram / tokens /
features), ``attention`` (fusion weights over modalities), ``importance`` (drop-one-modality and permutation
importance with bootstrap intervals), ``columns`` (how one column is made missing or shuffled), ``targets`` (what is
explained, per problem type), ``plots`` (matplotlib figures), ``output`` (writing them to a folder).
"""

from .attention import fusion_weights
from .attributions import ATTRIBUTORS, METHODS, Explanation, ModalityAttribution, explain
from .importance import IMPORTANCE_METHODS, IMPORTANCE_METRICS, ImportanceResult, ImportanceRow, modality_importance
from .output import write_explanations
from .plots import figure_png, plot_explanation, plot_importance

__all__ = [
    "ATTRIBUTORS",
    "IMPORTANCE_METHODS",
    "IMPORTANCE_METRICS",
    "METHODS",
    "Explanation",
    "ImportanceResult",
    "ImportanceRow",
    "ModalityAttribution",
    "explain",
    "figure_png",
    "fusion_weights",
    "modality_importance",
    "plot_explanation",
    "plot_importance",
    "write_explanations",
]
