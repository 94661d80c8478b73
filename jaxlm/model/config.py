"""The model's shape and architecture: one frozen dataclass, filled from a run config and a family table."""

from __future__ import annotations

import dataclasses
import math

import ml_collections

# What each family is made of (DESIGN.md's table). Sizes come from the run config.
FAMILY_ARCHITECTURES = {
    #         norm         norm_position positions  ffn         activation    causal tied   head   bias   type_vocab norm_eps scaled_residual_init
    "gpt2":  ("layernorm", "pre",        "learned", "mlp",      "gelu_tanh",  True,  True,  "lm",  True,  0,         1e-5,    True),
    "llama": ("rmsnorm",   "pre",        "rope",    "swiglu",   "silu",       True,  False, "lm",  False, 0,         1e-5,    False),
    "bert":  ("layernorm", "post",       "learned", "mlp",      "gelu",       False, True,  "mlm", True,  2,         1e-12,   False),
}
_ARCHITECTURE_FIELDS = ("norm", "norm_position", "positions", "ffn", "activation", "causal",
                        "tied_embeddings", "head", "use_bias", "type_vocab_size", "norm_eps",
                        "scaled_residual_init")


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
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    init_std: float = 0.02
    scaled_residual_init: bool = False  # GPT-2: residual projections drawn with std / sqrt(2 * layers)
    dropout: float = 0.0
    dtype: str = "float32"  # compute dtype; parameters are always float32
    remat: str = "none"  # "none" | "full" | "dots"
    attention: str = "xla"  # "xla" (attention.attend) | "cudnn" (GPU) | "splash" (TPU): attention_kernels.py
    interpret_kernels: bool = False  # run Pallas kernels in the interpreter (tests on the CPU)
    scan_unroll: int = 1  # blocks per iteration of the layer scan (num_layers: no loop at all)

    @property
    def head_dim(self) -> int:  # K
        return self.width // self.num_heads

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


def model_config_from(config: ml_collections.ConfigDict, vocab_size: int) -> ModelConfig:
    """The ModelConfig of a run, given the tokenizer's vocabulary size."""
    m = config.model
    model_cfg = ModelConfig.for_family(
        m.family,
        vocab_size=vocab_size if m.vocab_size == -1 else m.vocab_size,
        width=m.width,
        num_layers=m.num_layers,
        num_heads=m.num_heads,
        num_kv_heads=m.num_heads if m.num_kv_heads == -1 else m.num_kv_heads,
        mlp_dim=m.mlp_dim,
        max_len=config.data.seq_len if m.max_len == -1 else m.max_len,
        dropout=m.dropout,
        dtype=m.dtype,
        remat=m.remat,
        attention=m.attention,
        scan_unroll=m.scan_unroll,
        next_sentence_head=bool(config.data.get("next_sentence", False)),
    )
    if m.get("biases", "family") == "none":  # nanoGPT's bias=False
        model_cfg = dataclasses.replace(model_cfg, use_bias=False)
    if model_cfg.mlp_dim == -1:
        model_cfg = dataclasses.replace(model_cfg, mlp_dim=default_mlp_dim(model_cfg.ffn, m.width))
    return model_cfg
