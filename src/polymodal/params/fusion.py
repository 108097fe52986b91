"""The fusions' parameters, registered in :data:`FUSION_PARAMS` by the fusion's name.

Each registered class is that fusion's ``Params``: its fields are the keys of the ``fusion`` section besides the
common ``name``, ``dim`` and ``dropout``, its docstring the fusion's description in the config schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..registry import Registry, register


class FusionParams(BaseModel):
    """Fusion-specific parameters beyond ``dim`` and ``dropout`` (none for the simplest methods)."""

    model_config = ConfigDict(extra="forbid")


FUSION_PARAMS: Registry[FusionParams] = Registry("fusion")


# ------------------------------------------------------------------------------------------ no own parameters
@register(FUSION_PARAMS, "concat")
class ConcatParams(FusionParams):
    """Concatenate the pooled embeddings (absent ones replaced by a learned "missing" vector), then an MLP layer."""


@register(FUSION_PARAMS, "weighted")
class WeightedParams(FusionParams):
    """Learned softmax-weighted sum of projected embeddings over the present modalities (weighted-average late fusion, e.g. Baltrušaitis et al. 2019 survey)."""


@register(FUSION_PARAMS, "product")
class ProductParams(FusionParams):
    """Element-wise (Hadamard) product of projected embeddings, absent ones neutral (ones), then LayerNorm + MLP (multiplicative fusion, e.g. Kim et al. 2017 MLB)."""


@register(FUSION_PARAMS, "gated")
class GatedParams(FusionParams):
    """Gated multimodal unit (Arevalo et al. 2017, "Gated Multimodal Units for Information Fusion"), gates masked to present modalities."""


# ------------------------------------------------------------------------------------------ their own parameters
@register(FUSION_PARAMS, "attention")
class AttentionParams(FusionParams):
    """Self-attention over one token per modality with a [CLS] readout (Vaswani et al. 2017, Transformer)."""

    heads: int = Field(4, ge=1, description="attention heads (must divide the fusion dim)")
    layers: int = Field(1, ge=1, le=4, description="transformer encoder layers")


@register(FUSION_PARAMS, "transformer")
class TransformerParams(AttentionParams):
    """Joint transformer over all modalities' token sequences, [CLS] readout (simplified MulT, Tsai et al. 2019)."""

    heads: int = Field(4, ge=1, description="attention heads (must divide the fusion dim)")
    layers: int = Field(2, ge=1, le=6, description="transformer encoder layers")
    max_tokens: int = Field(64, ge=1, description="tokens kept per modality (the first ones)")


@register(FUSION_PARAMS, "film")
class FiLMParams(FusionParams):
    """Feature-wise linear modulation (FiLM, Perez et al. 2018): a context vector from all pooled embeddings sets a
    per-feature scale and shift for residual blocks run on every token of every modality (with its position);
    masked mean, max and attention pooling per modality read the result. What questions about one object of an
    image need: the question modulates every image cell, attention pooling reads the cells it singles out (their
    content and their position)."""

    layers: int = Field(2, ge=1, le=6, description="FiLM-ed residual blocks applied to every token")
    max_tokens: int = Field(64, ge=1, description="tokens kept per modality (the first ones)")
    heads: int = Field(
        2,
        ge=0,
        le=8,
        description="attention-pooling heads: each scores every token from its "
        "modulated features and averages the tokens by those scores (0: mean and max pooling only)",
    )


@register(FUSION_PARAMS, "graph")
class GraphParams(FusionParams):
    """Attention-weighted message passing between modality nodes (Veličković et al. 2018, GAT)."""

    steps: int = Field(2, ge=1, le=8, description="rounds of message passing")


@register(FUSION_PARAMS, "late")
class LateParams(FusionParams):
    """Decision-level fusion: a head per modality; probabilities combined by a learned softmax-weighted average over the present modalities, or by majority vote (late fusion as in Baltrušaitis et al. 2019 and MultiBench's LF)."""

    combine: Literal["weighted", "vote"] = "weighted"
    # With "weighted", each head is also trained on its own loss (times this weight), so that it stays a usable
    # unimodal predictor; with "vote" the heads are trained on their own losses only, and this is not used.
    head_loss_weight: float = Field(1.0, ge=0.0)


@register(FUSION_PARAMS, "dynamic")
class DynamicParams(FusionParams):
    """Quality-aware decision-level fusion: a head per modality, combined with per-row weights from each modality's estimated reliability: a small gate on the modality's own embedding and its head's confidence (energy, top probability, entropy), trained to predict whether that head is right (dynamic fusion as in Zhang et al. ICML 2023, "Provable Dynamic Fusion for Low-Quality Multimodal Data"). A noisy or damaged modality gets a low weight in that row only; use with training.corruption_augmentation (the robust preset)."""

    head_loss_weight: float = Field(
        1.0, ge=0.0, description="weight of the per-modality heads' own losses (each head stays a usable predictor)"
    )
    reliability_loss_weight: float = Field(
        0.5,
        ge=0.0,
        description="weight of the gates' loss: each gate learns the probability that its modality's head gives the "
        "true class (classification; 0 = the gates learn from the fused loss only)",
    )
    gate_hidden: int = Field(32, ge=1, le=1024, description="hidden width of each modality's reliability gate")
    joint: bool = Field(
        False,
        description="add a joint expert: a head on all modalities' embeddings together (as concat fusion), with its "
        "own reliability gate, weighted against the per-modality heads row by row. Keeps concat's clean accuracy, "
        "which per-modality heads alone lose; trained with corruption augmentation it learns to ignore damage",
    )
    independent_experts: bool = Field(
        False,
        description="each modality's encoder and head learn from that head's own loss only; the fused loss trains "
        "the gates (and the joint head, which then reads the embeddings detached). The fallback when another "
        "modality fails is then trained as a single-modality model is, instead of as one part of a product",
    )


@register(FUSION_PARAMS, "tensor")
class TensorParams(FusionParams):
    """Tensor fusion network (Zadeh et al. 2017): outer product of the [projected, 1] vectors of all modalities."""

    rank_dim: int = Field(
        8, ge=1, le=64, description="each modality is projected to this size before the outer product"
    )


@register(FUSION_PARAMS, "lowrank")
class LowRankParams(FusionParams):
    """Low-rank multimodal fusion (Liu et al. 2018, "Efficient Low-rank Multimodal Fusion with Modality-Specific Factors")."""

    rank: int = Field(4, ge=1, le=64, description="rank of the decomposed fusion weight tensor")
