"""Our ModelConfig against Hugging Face's config.json, for the classes we export and import: each family's
language model and its sequence and token classifiers (with their label names).

Only what a family's HF class can express round-trips; anything else in an HF config (another RoPE
scaling, biases LLaMA does not have, a different activation) is refused with the field's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from jaxlm.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from jaxlm.export.errors import ExportError
from jaxlm.model.config import ModelConfig

ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "bert": "BertForMaskedLM"}
# A bert trained with next-sentence prediction keeps both heads, as Google's BERT checkpoints do;
# AutoModelForMaskedLM still loads it (and notes the next-sentence weights it leaves unused).
NEXT_SENTENCE_ARCHITECTURE = "BertForPreTraining"
# A classifier's class, by what it labels (ModelConfig.labels_per) and family.
CLASSIFIER_ARCHITECTURES = {
    "sequence": {
        "gpt2": "GPT2ForSequenceClassification",
        "llama": "LlamaForSequenceClassification",
        "bert": "BertForSequenceClassification",
    },
    "token": {
        "gpt2": "GPT2ForTokenClassification",
        "llama": "LlamaForTokenClassification",
        "bert": "BertForTokenClassification",
    },
}
# Classes we import, and the family each is: the ones we export, and BERT's bare encoder.
IMPORTABLE = {
    **{arch: family for family, arch in ARCHITECTURES.items()},
    "BertModel": "bert",
    NEXT_SENTENCE_ARCHITECTURE: "bert",
    **{arch: family for by_family in CLASSIFIER_ARCHITECTURES.values() for family, arch in by_family.items()},
}


def architecture(cfg: ModelConfig, family: str) -> str:
    """The HF class that holds every head of `cfg`."""
    if cfg.num_labels:
        return CLASSIFIER_ARCHITECTURES[cfg.labels_per][family]
    return NEXT_SENTENCE_ARCHITECTURE if cfg.next_sentence_head else ARCHITECTURES[family]


def default_labels(num_labels: int) -> tuple[str, ...]:
    """HF's names for unnamed labels: LABEL_0, LABEL_1, ..."""
    return tuple(f"LABEL_{i}" for i in range(num_labels))


def _classifier_fields(cfg: ModelConfig, labels: Sequence[str] | None) -> dict:
    """config.json's label names and head dropout for a classifier; nothing for a language model."""
    if not cfg.num_labels:
        if labels:
            raise ExportError(f"{len(labels)} label names given, but the model has no classification head")
        return {}
    labels = tuple(labels) if labels is not None else default_labels(cfg.num_labels)
    if len(labels) != cfg.num_labels or len(set(labels)) != len(labels):
        raise ExportError(
            f"label names {list(labels)}: the classifier has {cfg.num_labels} outputs and needs as many "
            "distinct names, in output order"
        )
    return dict(
        id2label={str(i): name for i, name in enumerate(labels)},
        label2id={name: i for i, name in enumerate(labels)},
        classifier_dropout=cfg.head_dropout,
    )


# Our activation names against HF's (GPT-2's "gelu_new" is the tanh approximation).
_ACTIVATION_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "silu": "silu"}
_ACTIVATION_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "silu": "silu"}


def to_hf_config(cfg: ModelConfig, family: str, labels: Sequence[str] | None = None) -> dict:
    """The config.json of `cfg` as the family's HF class reads it (float32 weights).

    A classifier's carries its `labels` (names in output order; None: HF's LABEL_0, ...). pad_token_id is
    how HF's causal sequence classifiers find each row's last real token.
    """
    common = dict(
        architectures=[architecture(cfg, family)],
        model_type=family,
        vocab_size=cfg.vocab_size,
        pad_token_id=PAD_ID,
        dtype="float32",
        **_classifier_fields(cfg, labels),
    )
    if family == "gpt2":
        return dict(
            common,
            n_embd=cfg.width,
            n_layer=cfg.num_layers,
            n_head=cfg.num_heads,
            n_inner=cfg.mlp_dim,
            n_positions=cfg.max_len,
            activation_function=_ACTIVATION_TO_HF[cfg.activation],
            layer_norm_epsilon=cfg.norm_eps,
            initializer_range=cfg.init_std,
            resid_pdrop=cfg.dropout,
            embd_pdrop=cfg.dropout,
            attn_pdrop=0.0,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
            tie_word_embeddings=True,
        )
    if family == "llama":
        return dict(
            common,
            hidden_size=cfg.width,
            intermediate_size=cfg.mlp_dim,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads,
            head_dim=cfg.head_dim,
            max_position_embeddings=cfg.max_len,
            rms_norm_eps=cfg.norm_eps,
            hidden_act=_ACTIVATION_TO_HF[cfg.activation],
            initializer_range=cfg.init_std,
            rope_theta=cfg.rope_theta,
            rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
            attention_bias=False,
            mlp_bias=False,
            tie_word_embeddings=False,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
        )
    return dict(
        common,
        hidden_size=cfg.width,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_dim,
        hidden_act=_ACTIVATION_TO_HF[cfg.activation],
        max_position_embeddings=cfg.max_len,
        type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.norm_eps,
        initializer_range=cfg.init_std,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=0.0,
        position_embedding_type="absolute",
        tie_word_embeddings=True,
    )


def generation_config(cfg: ModelConfig, family: str) -> dict | None:
    """generation_config.json for the causal language models (None for bert and classifiers, which do not
    generate)."""
    if family == "bert" or cfg.num_labels:
        return None
    return {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}


def _require(hf: dict, field: str, allowed, why: str) -> None:
    value = hf.get(field, allowed[0])
    if value not in allowed:
        raise ExportError(f"config.json: {field}={value!r} is not supported ({why})")


def family_of(hf: dict) -> str:
    """The jaxlm family of an HF config.json, from its `architectures`."""
    architectures = hf.get("architectures") or []
    for arch in architectures:
        if arch in IMPORTABLE:
            return IMPORTABLE[arch]
    raise ExportError(
        f"config.json: architectures={architectures} is not supported; jaxlm imports {', '.join(IMPORTABLE)}"
    )


def _activation(hf: dict, field: str, default: str) -> str:
    name = hf.get(field, default)
    if name not in _ACTIVATION_FROM_HF:
        raise ExportError(
            f"config.json: {field}={name!r} is not supported (jaxlm has {', '.join(_ACTIVATION_FROM_HF)})"
        )
    return _ACTIVATION_FROM_HF[name]


def labels_of(hf: dict) -> tuple[str, ...]:
    """A classifier config.json's label names in output order (HF's LABEL_i where it names none); () for
    a language model."""
    num_labels = _num_labels(hf)
    names = {int(i): name for i, name in (hf.get("id2label") or {}).items()}
    return tuple(names.get(i, default) for i, default in enumerate(default_labels(num_labels)))


def _labels_per(hf: dict) -> str | None:
    """What the config's classifier labels ("sequence" or "token"), or None for a language model."""
    for labels_per, by_family in CLASSIFIER_ARCHITECTURES.items():
        if set(hf.get("architectures") or []) & set(by_family.values()):
            return labels_per
    return None


def _num_labels(hf: dict) -> int:
    if _labels_per(hf) is None:
        return 0
    # save_pretrained writes id2label; num_labels alone is what a hand-written config may give. HF's default is 2.
    return len(hf["id2label"]) if hf.get("id2label") else int(hf.get("num_labels", 2))


def from_hf_config(hf: dict) -> tuple[ModelConfig, str, bool]:
    """(our ModelConfig, the family, whether the checkpoint ties LLaMA's output to its embedding)."""
    cfg, family, tied = _language_model_config(hf)
    labels_per = _labels_per(hf)
    if labels_per is None:
        return cfg, family, tied
    # A classifier has no output matrix to tie; dropouts are the trainer's choice, as for the blocks.
    return dataclasses.replace(cfg, num_labels=_num_labels(hf), labels_per=labels_per), family, False


def _language_model_config(hf: dict) -> tuple[ModelConfig, str, bool]:
    family = family_of(hf)
    if family == "gpt2":
        _require(hf, "scale_attn_by_inverse_layer_idx", (False,), "jaxlm scales attention by 1/sqrt(K) only")
        _require(hf, "scale_attn_weights", (True,), "jaxlm always scales attention scores")
        _require(hf, "tie_word_embeddings", (True,), "jaxlm's gpt2 ties its output to the embedding")
        _require(hf, "add_cross_attention", (False,), "jaxlm has no cross-attention")
        width = hf.get("n_embd", 768)
        cfg = ModelConfig.for_family(
            "gpt2",
            vocab_size=hf["vocab_size"],
            width=width,
            num_layers=hf.get("n_layer", 12),
            num_heads=hf.get("n_head", 12),
            num_kv_heads=hf.get("n_head", 12),
            mlp_dim=hf.get("n_inner") or 4 * width,
            max_len=hf.get("n_positions", 1024),
            activation=_activation(hf, "activation_function", "gelu_new"),
            norm_eps=hf.get("layer_norm_epsilon", 1e-5),
            init_std=hf.get("initializer_range", 0.02),
        )
        return cfg, family, True
    if family == "llama":
        _require(hf, "attention_bias", (False,), "jaxlm's llama has no attention biases")
        _require(hf, "mlp_bias", (False,), "jaxlm's llama has no FFN biases")
        rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ExportError(f"config.json: rope type {rope_type!r} is not supported (jaxlm has plain RoPE)")
        heads = hf["num_attention_heads"]
        if hf.get("head_dim") not in (None, hf["hidden_size"] // heads):
            raise ExportError(
                f"config.json: head_dim={hf['head_dim']} is not supported (jaxlm's head "
                f"dimension is hidden_size / num_attention_heads = {hf['hidden_size'] // heads})"
            )
        cfg = ModelConfig.for_family(
            "llama",
            vocab_size=hf["vocab_size"],
            width=hf["hidden_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            mlp_dim=hf["intermediate_size"],
            max_len=hf.get("max_position_embeddings", 2048),
            activation=_activation(hf, "hidden_act", "silu"),
            norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
            init_std=hf.get("initializer_range", 0.02),
        )
        return cfg, family, bool(hf.get("tie_word_embeddings", False))
    _require(hf, "position_embedding_type", ("absolute",), "jaxlm's bert has learned absolute positions")
    _require(hf, "is_decoder", (False,), "jaxlm's bert is a bidirectional encoder")
    cfg = ModelConfig.for_family(
        "bert",
        vocab_size=hf["vocab_size"],
        width=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        num_kv_heads=hf["num_attention_heads"],
        mlp_dim=hf["intermediate_size"],
        max_len=hf.get("max_position_embeddings", 512),
        activation=_activation(hf, "hidden_act", "gelu"),
        type_vocab_size=hf.get("type_vocab_size", 2),
        norm_eps=hf.get("layer_norm_eps", 1e-12),
        init_std=hf.get("initializer_range", 0.02),
        next_sentence_head=NEXT_SENTENCE_ARCHITECTURE in (hf.get("architectures") or []),
    )
    return cfg, family, True


def family_of_config(cfg: ModelConfig) -> str:
    """The family whose HF class can hold `cfg`, or an error saying why none can."""
    for family in ARCHITECTURES:
        reference = ModelConfig.for_family(
            family, vocab_size=1, width=1, num_layers=1, num_heads=1, num_kv_heads=1, mlp_dim=1, max_len=1
        )
        if all(getattr(cfg, field) == getattr(reference, field) for field in _STRUCTURE_FIELDS):
            if family == "llama" and cfg.use_bias:
                raise ExportError("use_bias=True: jaxlm exports LLaMA without biases, as LlamaForCausalLM has them")
            if family == "bert" and not cfg.type_vocab_size:
                raise ExportError("type_vocab_size=0: HF's BertForMaskedLM needs token-type embeddings")
            if family != "llama" and cfg.num_kv_heads != cfg.num_heads:
                raise ExportError(
                    f"num_kv_heads={cfg.num_kv_heads}: HF's {architecture(cfg, family)} has no "
                    f"grouped-query attention; it needs num_kv_heads = num_heads = {cfg.num_heads}"
                )
            return family
    raise ExportError(
        "the model's structure (norms, positions, FFN, head, biases) is none of gpt2, llama "
        "and bert, so no HF class can hold it"
    )


# What decides the HF class; sizes, epsilons and the activation are carried in config.json. Biases are
# not: a bias-free gpt2 or bert is written with zero biases, which compute the same function.
_STRUCTURE_FIELDS = ("norm", "norm_position", "positions", "ffn", "causal", "tied_embeddings", "head")
