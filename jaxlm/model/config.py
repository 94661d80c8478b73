"""The model's shape and architecture: one frozen dataclass, a table of what each family is made of,
and the choices the model offers (families, compute dtypes, remat policies, attention kernels).

Imports no JAX, so the run config can check its fields against these choices cheaply.
"""

from __future__ import annotations

import dataclasses
import math

# What each family is made of (scaled: GPT-2's residual projections drawn with std / sqrt(2 * layers)).
# Sizes come from whoever builds the ModelConfig (jaxlm.config.model_config).
# fmt: off
FAMILY_ARCHITECTURES = {
    #         norm         norm_pos positions  ffn       activation   causal tied   head   bias   types eps    scaled
    "gpt2":  ("layernorm", "pre",   "learned", "mlp",    "gelu_tanh", True,  True,  "lm",  True,  0,    1e-5,  True),
    "llama": ("rmsnorm",   "pre",   "rope",    "swiglu", "silu",      True,  False, "lm",  False, 0,    1e-5,  False),
    "bert":  ("layernorm", "post",  "learned", "mlp",    "gelu",      False, True,  "mlm", True,  2,    1e-12, False),
}
# fmt: on
FAMILIES = tuple(FAMILY_ARCHITECTURES)
DTYPES = ("float32", "bfloat16", "float16")  # compute dtypes; parameters are always float32
REMAT = ("none", "full", "dots")  # transformer.REMAT_POLICIES implements all but "none"
ATTENTION_KERNELS = ("xla", "cudnn", "splash")  # attention.Attention dispatches on these
LABELS_PER = ("sequence", "token")  # what a classification head labels: each row, or each position
_ARCHITECTURE_FIELDS = (
    "norm",
    "norm_position",
    "positions",
    "ffn",
    "activation",
    "causal",
    "tied_embeddings",
    "head",
    "use_bias",
    "type_vocab_size",
    "norm_eps",
    "scaled_residual_init",
)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything the model's modules need to know; nothing about data, optimizers or meshes."""

    vocab_size: int  # V
    width: int  # D
    num_layers: int
    num_heads: int  # H
    num_kv_heads: int  # G, grouped-query heads; G divides H
    mlp_dim: int  # F
    max_len: int  # longest sequence the positions cover
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    norm_position: str = "pre"  # "pre" (GPT-2, LLaMA) | "post" (BERT)
    positions: str = "learned"  # "learned" | "rope"
    ffn: str = "mlp"  # "mlp" (Dense-act-Dense) | "swiglu"
    activation: str = "gelu_tanh"  # "gelu_tanh" | "gelu" (exact erf) | "silu"
    causal: bool = True
    tied_embeddings: bool = True  # the output projection is the token embedding transposed
    head: str = "lm"  # "lm" | "mlm" (BERT's dense + act + norm + tied decoder with bias)
    use_bias: bool = True  # biases in the blocks' dense layers and LayerNorms (heads keep theirs)
    type_vocab_size: int = 0  # BERT's token-type (segment A/B) embeddings; 0 = none
    next_sentence_head: bool = False  # BERT's pooler (first token, dense, tanh) and 2-way IsNext/NotNext head
    # > 0: a classification head with this many outputs (1 = regression) replaces the LM heads: the model
    # gives label logits [B, C] (labels_per="sequence") or [B, L, C] (labels_per="token"); classifier.py.
    num_labels: int = 0
    labels_per: str = "sequence"  # "sequence" (one label per row) | "token" (one label per position)
    classifier_dropout: float | None = None  # dropout before the classifier; None = `dropout` (as HF's BERT)
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    init_std: float = 0.02
    scaled_residual_init: bool = False  # GPT-2: residual projections drawn with std / sqrt(2 * layers)
    dropout: float = 0.0
    dtype: str = "float32"  # compute dtype; parameters are always float32
    remat: str = "none"  # "none" | "full" | "dots"
    attention: str = "xla"  # "xla" (attention.attend) | "cudnn" (GPU) | "splash" (TPU): attention_kernels.py
    interpret_kernels: bool = False  # run Pallas kernels in the interpreter (tests on the CPU)
    # The mesh axes that split the batch and the heads inside a fused kernel's shard_map. The model names
    # only logical axes; whoever builds the step resolves "batch" and "heads" under its rules and sets these.
    kernel_batch_axes: tuple[str, ...] = ()
    kernel_head_axes: tuple[str, ...] = ()
    scan_unroll: int = 1  # blocks per iteration of the layer scan (num_layers: no loop at all)

    @property
    def head_dim(self) -> int:  # K
        return self.width // self.num_heads

    @property
    def head_dropout(self) -> float:
        """Dropout rate before a classification head's last dense layer."""
        return self.dropout if self.classifier_dropout is None else self.classifier_dropout

    @property
    def residual_init_std(self) -> float:
        """Init std of the projections that write into the residual stream (attention out, FFN down)."""
        if self.scaled_residual_init:
            return self.init_std / (2 * self.num_layers) ** 0.5
        return self.init_std

    @classmethod
    def for_family(cls, family: str, **sizes) -> ModelConfig:
        """The config of `family` ("gpt2", "llama", "bert") with the given sizes and overrides."""
        architecture = dict(zip(_ARCHITECTURE_FIELDS, FAMILY_ARCHITECTURES[family]))
        architecture.update(sizes)
        return cls(**architecture)


def default_mlp_dim(ffn: str, width: int) -> int:
    """4*D for a plain MLP; for SwiGLU 8/3*D rounded up to a multiple of 64 (LLaMA's rule)."""
    if ffn == "swiglu":
        return 64 * math.ceil(8 * width / 3 / 64)
    return 4 * width
