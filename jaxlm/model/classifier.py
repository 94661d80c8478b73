"""Classification heads on the Transformer's final hidden states, computed as Hugging Face's
*ForSequenceClassification and *ForTokenClassification compute them, and a classifier's parameters made
from a pretrained language model's.

The Transformer builds one of these heads instead of its LM heads when `cfg.num_labels > 0`:
- sequence, bidirectional (bert): BERT's pooler (the [CLS] position's state, dense D->D, tanh), dropout,
  then the classifier (BertForSequenceClassification);
- sequence, causal (gpt2, llama): a bias-free dense on the state of each row's last real token, the only
  position that has seen the whole row (GPT2/LlamaForSequenceClassification's `score`; no dropout there);
- token (every family): dropout, then a dense on every position's state (*ForTokenClassification).
One label count C serves classification (C >= 2) and regression (C = 1, STS-B).
Shape letters: B batch, L length, D width, C labels.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlm.model.config import LABELS_PER, ModelConfig
from jaxlm.model.layers import Dense, dropout

# The Transformer's attribute (the top-level parameter name) holding each kind of head.
HEAD_NAMES = {"sequence": "sequence_head", "token": "token_head"}
assert set(HEAD_NAMES) == set(LABELS_PER), "config.LABELS_PER names the heads built here"
# A pretrained model's heads that a classifier leaves behind.
LM_HEADS = ("lm_head", "mlm_head", "next_sentence_head")


def _dense(cfg: ModelConfig, outputs: int, out_axis: str, use_bias: bool, rngs: nnx.Rngs) -> Dense:
    return Dense(
        (cfg.width,),
        (outputs,),
        in_axes=("embed",),
        out_axes=(out_axis,),
        use_bias=use_bias,
        std=cfg.init_std,
        dtype=cfg.dtype,
        rngs=rngs,
    )


def last_real_token(x_BxLxD: jax.Array, segment_ids_BxL: jax.Array) -> jax.Array:
    """Each row's state [B, D] at its last position with a nonzero segment id (one sequence per row).

    Takes the rightmost real position as HF does (left or right padding); a row of padding gives position 0.
    """
    index_BxL = jnp.arange(x_BxLxD.shape[1]) * (segment_ids_BxL != 0)
    last_B = jnp.max(index_BxL, axis=1)
    return jnp.take_along_axis(x_BxLxD, last_B[:, None, None], axis=1)[:, 0]


class SequenceHead(nnx.Module):
    """One row's label logits [B, C]: BERT's pooler and classifier, or a causal model's last-token score."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        assert cfg.num_labels > 0, "a classification head needs num_labels > 0"
        self.rate = cfg.head_dropout
        # A bidirectional encoder summarises the row in its first ([CLS]) position; a causal one in its last.
        self.pooler = None if cfg.causal else _dense(cfg, cfg.width, "embed", use_bias=True, rngs=rngs)
        self.classifier = _dense(cfg, cfg.num_labels, "labels", use_bias=not cfg.causal, rngs=rngs)

    def __call__(
        self, x_BxLxD: jax.Array, segment_ids_BxL: jax.Array, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        if self.pooler is None:
            return self.classifier(last_real_token(x_BxLxD, segment_ids_BxL))
        pooled_BxD = jnp.tanh(self.pooler(x_BxLxD[:, 0]))
        return self.classifier(dropout(pooled_BxD, self.rate, dropout_key))


class TokenHead(nnx.Module):
    """Every position's label logits [B, L, C]: dropout, then a dense with a bias."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        assert cfg.num_labels > 0, "a classification head needs num_labels > 0"
        self.rate = cfg.head_dropout
        self.classifier = _dense(cfg, cfg.num_labels, "labels", use_bias=True, rngs=rngs)

    def __call__(self, x_BxLxD: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
        return self.classifier(dropout(x_BxLxD, self.rate, dropout_key))


def classifier_config(cfg: ModelConfig, num_labels: int, labels_per: str = "sequence") -> ModelConfig:
    """`cfg` (a language model's) with a classification head of `num_labels` outputs instead of its LM heads."""
    assert num_labels > 0, f"num_labels {num_labels} must be positive (1 = regression)"
    assert labels_per in LABELS_PER, f"labels_per {labels_per!r} is not one of {LABELS_PER}"
    return dataclasses.replace(cfg, num_labels=num_labels, labels_per=labels_per, next_sentence_head=False)


def classifier_params(
    cfg: ModelConfig, params: dict, num_labels: int, labels_per: str = "sequence", *, seed: int = 0
) -> tuple[ModelConfig, dict]:
    """(the classifier's config, its parameters) from a pretrained model's config and pure-dict `params`.

    The encoder's parameters are `params`' own arrays, unchanged; BERT's pooler starts as the pretrained
    next-sentence head's when there is one (BERT's fine-tuning recipe); the rest of the head is drawn
    fresh from `seed`. The LM heads are left behind.
    """
    new_cfg = classifier_config(cfg, num_labels, labels_per)
    head_class = SequenceHead if labels_per == "sequence" else TokenHead
    head = nnx.to_pure_dict(nnx.state(head_class(new_cfg, rngs=nnx.Rngs(seed))))
    if "pooler" in head and "next_sentence_head" in params:
        head["pooler"] = params["next_sentence_head"]["pooler"]
    encoder = {name: tree for name, tree in params.items() if name not in LM_HEADS}
    return new_cfg, {**encoder, HEAD_NAMES[labels_per]: head}
