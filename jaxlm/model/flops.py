"""Analytic FLOPs of one training step (forward and backward), for MFU and for checking XLA's count.

Conventions (PaLM, appendix B; nanoGPT's `estimate_mfu`):
- Matmuls: 6 FLOPs per matmul parameter per token, 2 forward and 4 backward. Matmul parameters are
  the weights that multiply activations: every block's projections and the output projection
  (a tied embedding counts once, as the output projection). Lookup tables (untied input embedding,
  learned positions, token types), biases and norm scales do no matmul and are left out.
- Attention scores and weighted values: 12 x layers x width x seq_len per token, forward and
  backward, over the full L x L matrix. That is the work the step does (the XLA attention path
  computes every score and then masks), so it is not halved for causal models; MFU conventions
  that credit only the unmasked half of a causal model use `attention / 2`.
- Rematerialisation's recomputed forward is not counted: these are the model's FLOPs, whatever
  the memory policy; XLA's own count includes the recomputation.
"""

from __future__ import annotations

import dataclasses

from jaxlm.model.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class StepFlops:
    """FLOPs of one training step, split into weight matmuls and attention."""

    matmul: float  # 6 x matmul parameters x tokens
    attention: float  # 12 x layers x width x seq_len x tokens (full L x L)

    @property
    def total(self) -> float:
        return self.matmul + self.attention


def block_matmul_params(cfg: ModelConfig) -> int:
    """Matmul weights of one block: query, key, value and output projections, and the FFN."""
    D, H, G, K, F = cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.mlp_dim
    attention = D * H * K + 2 * D * G * K + H * K * D
    ffn = (3 if cfg.ffn == "swiglu" else 2) * D * F
    return attention + ffn


def head_matmul_params(cfg: ModelConfig) -> int:
    """Matmul weights after the blocks: the output projection D x V (and BERT's D x D transform).

    A token classifier's is D x C; a sequence classifier's works on one position a row, which is left out.
    """
    if cfg.num_labels:
        return cfg.width * cfg.num_labels if cfg.labels_per == "token" else 0
    transform = cfg.width * cfg.width if cfg.head == "mlm" else 0
    return transform + cfg.width * cfg.vocab_size


def matmul_params(cfg: ModelConfig, num_layers: int | None = None) -> int:
    """Matmul weights of the model, or of its head and `num_layers` blocks."""
    layers = cfg.num_layers if num_layers is None else num_layers
    return layers * block_matmul_params(cfg) + head_matmul_params(cfg)


def train_step_flops(cfg: ModelConfig, batch_size: int, seq_len: int, num_layers: int | None = None) -> StepFlops:
    """FLOPs of a training step on [batch_size, seq_len] tokens, or of its head and `num_layers` blocks."""
    layers = cfg.num_layers if num_layers is None else num_layers
    tokens = batch_size * seq_len
    return StepFlops(
        matmul=6.0 * matmul_params(cfg, layers) * tokens, attention=12.0 * layers * cfg.width * seq_len * tokens
    )
