"""Our parameter names and layouts against Hugging Face's: one table per family, and conversion both ways.

A rule reads: HF parameter name ("{i}" = layer index; our arrays stack layers on a leading axis), our
parameter paths (several = fused along the output axis, as GPT-2's c_attn holds query, key and value),
and the layout that turns one of our arrays into theirs: flatten to [in, out] with the first `in_axes`
axes as input (0 = one vector), then transpose for torch.nn.Linear's [out, in].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from jaxlm.export.errors import ExportError


class Layout(NamedTuple):
    in_axes: int  # leading axes of our array that are the input side
    transpose: bool  # torch.nn.Linear stores [out, in]


VECTOR = Layout(0, False)  # norms, biases
ROWS = Layout(1, False)  # embedding tables; GPT-2's Conv1D stores [in, out]
ROWS2 = Layout(2, False)  # GPT-2's attention c_proj, from our [H, K, D]
LINEAR = Layout(1, True)  # torch.nn.Linear from our [D, ...]
LINEAR2 = Layout(2, True)  # torch.nn.Linear from our attention output [H, K, D]


class Rule(NamedTuple):
    hf: str
    ours: tuple[str, ...]
    layout: Layout


def _r(hf: str, *ours: str, layout: Layout) -> Rule:
    return Rule(hf, ours, layout)


_QKV = ("blocks/attention/query", "blocks/attention/key", "blocks/attention/value")

GPT2_RULES = (
    _r("transformer.wte.weight", "token_embed/embedding", layout=ROWS),
    _r("transformer.wpe.weight", "position_embed/embedding", layout=ROWS),
    _r("transformer.h.{i}.ln_1.weight", "blocks/attention_norm/scale", layout=VECTOR),
    _r("transformer.h.{i}.ln_1.bias", "blocks/attention_norm/bias", layout=VECTOR),
    _r("transformer.h.{i}.attn.c_attn.weight", *(p + "/kernel" for p in _QKV), layout=ROWS),
    _r("transformer.h.{i}.attn.c_attn.bias", *(p + "/bias" for p in _QKV), layout=VECTOR),
    _r("transformer.h.{i}.attn.c_proj.weight", "blocks/attention/out/kernel", layout=ROWS2),
    _r("transformer.h.{i}.attn.c_proj.bias", "blocks/attention/out/bias", layout=VECTOR),
    _r("transformer.h.{i}.ln_2.weight", "blocks/ffn_norm/scale", layout=VECTOR),
    _r("transformer.h.{i}.ln_2.bias", "blocks/ffn_norm/bias", layout=VECTOR),
    _r("transformer.h.{i}.mlp.c_fc.weight", "blocks/ffn/up/kernel", layout=ROWS),
    _r("transformer.h.{i}.mlp.c_fc.bias", "blocks/ffn/up/bias", layout=VECTOR),
    _r("transformer.h.{i}.mlp.c_proj.weight", "blocks/ffn/down/kernel", layout=ROWS),
    _r("transformer.h.{i}.mlp.c_proj.bias", "blocks/ffn/down/bias", layout=VECTOR),
    _r("transformer.ln_f.weight", "final_norm/scale", layout=VECTOR),
    _r("transformer.ln_f.bias", "final_norm/bias", layout=VECTOR),
)

LLAMA_RULES = (
    _r("model.embed_tokens.weight", "token_embed/embedding", layout=ROWS),
    _r("model.layers.{i}.input_layernorm.weight", "blocks/attention_norm/scale", layout=VECTOR),
    _r("model.layers.{i}.self_attn.q_proj.weight", "blocks/attention/query/kernel", layout=LINEAR),
    _r("model.layers.{i}.self_attn.k_proj.weight", "blocks/attention/key/kernel", layout=LINEAR),
    _r("model.layers.{i}.self_attn.v_proj.weight", "blocks/attention/value/kernel", layout=LINEAR),
    _r("model.layers.{i}.self_attn.o_proj.weight", "blocks/attention/out/kernel", layout=LINEAR2),
    _r("model.layers.{i}.post_attention_layernorm.weight", "blocks/ffn_norm/scale", layout=VECTOR),
    _r("model.layers.{i}.mlp.gate_proj.weight", "blocks/ffn/gate/kernel", layout=LINEAR),
    _r("model.layers.{i}.mlp.up_proj.weight", "blocks/ffn/up/kernel", layout=LINEAR),
    _r("model.layers.{i}.mlp.down_proj.weight", "blocks/ffn/down/kernel", layout=LINEAR),
    _r("model.norm.weight", "final_norm/scale", layout=VECTOR),
    _r("lm_head.weight", "lm_head/kernel", layout=LINEAR),
)

_BERT_LAYER = "bert.encoder.layer.{i}."
BERT_RULES = (
    _r("bert.embeddings.word_embeddings.weight", "token_embed/embedding", layout=ROWS),
    _r("bert.embeddings.position_embeddings.weight", "position_embed/embedding", layout=ROWS),
    _r("bert.embeddings.token_type_embeddings.weight", "type_embed/embedding", layout=ROWS),
    _r("bert.embeddings.LayerNorm.weight", "embed_norm/scale", layout=VECTOR),
    _r("bert.embeddings.LayerNorm.bias", "embed_norm/bias", layout=VECTOR),
    *(
        _r(_BERT_LAYER + f"attention.self.{name}.weight", f"blocks/attention/{name}/kernel", layout=LINEAR)
        for name in ("query", "key", "value")
    ),
    *(
        _r(_BERT_LAYER + f"attention.self.{name}.bias", f"blocks/attention/{name}/bias", layout=VECTOR)
        for name in ("query", "key", "value")
    ),
    _r(_BERT_LAYER + "attention.output.dense.weight", "blocks/attention/out/kernel", layout=LINEAR2),
    _r(_BERT_LAYER + "attention.output.dense.bias", "blocks/attention/out/bias", layout=VECTOR),
    _r(_BERT_LAYER + "attention.output.LayerNorm.weight", "blocks/attention_norm/scale", layout=VECTOR),
    _r(_BERT_LAYER + "attention.output.LayerNorm.bias", "blocks/attention_norm/bias", layout=VECTOR),
    _r(_BERT_LAYER + "intermediate.dense.weight", "blocks/ffn/up/kernel", layout=LINEAR),
    _r(_BERT_LAYER + "intermediate.dense.bias", "blocks/ffn/up/bias", layout=VECTOR),
    _r(_BERT_LAYER + "output.dense.weight", "blocks/ffn/down/kernel", layout=LINEAR),
    _r(_BERT_LAYER + "output.dense.bias", "blocks/ffn/down/bias", layout=VECTOR),
    _r(_BERT_LAYER + "output.LayerNorm.weight", "blocks/ffn_norm/scale", layout=VECTOR),
    _r(_BERT_LAYER + "output.LayerNorm.bias", "blocks/ffn_norm/bias", layout=VECTOR),
    _r("cls.predictions.transform.dense.weight", "mlm_head/transform/kernel", layout=LINEAR),
    _r("cls.predictions.transform.dense.bias", "mlm_head/transform/bias", layout=VECTOR),
    _r("cls.predictions.transform.LayerNorm.weight", "mlm_head/norm/scale", layout=VECTOR),
    _r("cls.predictions.transform.LayerNorm.bias", "mlm_head/norm/bias", layout=VECTOR),
    _r("cls.predictions.bias", "mlm_head/decoder_bias", layout=VECTOR),
)

# BERT's pooler and next-sentence classifier (BertForPreTraining), for models trained with them.
NEXT_SENTENCE_RULES = (
    _r("bert.pooler.dense.weight", "next_sentence_head/pooler/kernel", layout=LINEAR),
    _r("bert.pooler.dense.bias", "next_sentence_head/pooler/bias", layout=VECTOR),
    _r("cls.seq_relationship.weight", "next_sentence_head/classifier/kernel", layout=LINEAR),
    _r("cls.seq_relationship.bias", "next_sentence_head/classifier/bias", layout=VECTOR),
)

RULES = {"gpt2": GPT2_RULES, "llama": LLAMA_RULES, "bert": BERT_RULES}

# Classification heads (jaxlm.model.classifier) against *ForSequenceClassification / *ForTokenClassification.
# HF's causal sequence classifiers call theirs `score` and give it no bias; LLaMA's token classifier is
# `score` too, with a bias.
CLASSIFIER_RULES = {
    ("bert", "sequence"): (
        _r("bert.pooler.dense.weight", "sequence_head/pooler/kernel", layout=LINEAR),
        _r("bert.pooler.dense.bias", "sequence_head/pooler/bias", layout=VECTOR),
        _r("classifier.weight", "sequence_head/classifier/kernel", layout=LINEAR),
        _r("classifier.bias", "sequence_head/classifier/bias", layout=VECTOR),
    ),
    ("gpt2", "sequence"): (_r("score.weight", "sequence_head/classifier/kernel", layout=LINEAR),),
    ("llama", "sequence"): (_r("score.weight", "sequence_head/classifier/kernel", layout=LINEAR),),
    **{
        (family, "token"): (
            _r(f"{name}.weight", "token_head/classifier/kernel", layout=LINEAR),
            _r(f"{name}.bias", "token_head/classifier/bias", layout=VECTOR),
        )
        for family, name in (("bert", "classifier"), ("gpt2", "classifier"), ("llama", "score"))
    },
}


def rules_for(family: str, tree: dict) -> tuple[Rule, ...]:
    """The rules of the parts `tree` (params or shapes) has: the family's encoder and LM heads (a classifier
    has none), the next-sentence head, a classification head."""
    rules = tuple(rule for rule in RULES[family] if rule.ours[0].split("/")[0] in tree)
    rules += NEXT_SENTENCE_RULES if "next_sentence_head" in tree else ()
    for labels_per in ("sequence", "token"):
        rules += CLASSIFIER_RULES[family, labels_per] if f"{labels_per}_head" in tree else ()
    return rules


# The prefix a family's bare encoder/decoder (GPT2Model, LlamaModel, BertModel) leaves off its names.
BASE_PREFIX = {"gpt2": "transformer.", "llama": "model.", "bert": "bert."}

# Our parameters a bare encoder's file lacks (BertModel has no MLM head); imported fresh.
OPTIONAL = {"bert": "mlm_head/"}

# The output matrix HF stores beside the embedding; gpt2's and bert's are copies of it (tied).
OUTPUT = {"gpt2": "lm_head.weight", "llama": "lm_head.weight", "bert": "cls.predictions.decoder.weight"}

# Names HF files may hold that carry nothing of ours: tied copies of the embedding and buffers.
IGNORED_SUFFIXES = {
    "gpt2": (".attn.bias", ".attn.masked_bias", OUTPUT["gpt2"]),
    "llama": ("rotary_emb.inv_freq",),
    "bert": ("position_ids", OUTPUT["bert"], "cls.predictions.decoder.bias"),
}


def _get(tree: dict, path: str):
    for key in path.split("/"):
        tree = tree[key]
    return tree


def _set(tree: dict, path: str, value: np.ndarray) -> None:
    *parents, leaf = path.split("/")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def _flat_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    if layout.in_axes == 0:
        return (math.prod(shape),)
    return (math.prod(shape[: layout.in_axes]), math.prod(shape[layout.in_axes :]))


def _to_hf(arrays: list[np.ndarray], layout: Layout) -> np.ndarray:
    flat = np.concatenate([a.reshape(_flat_shape(a.shape, layout)) for a in arrays], axis=-1)
    return np.ascontiguousarray(flat.T if layout.transpose else flat)


def _from_hf(name: str, array: np.ndarray, shapes: list[tuple[int, ...]], layout: Layout) -> list[np.ndarray]:
    flats = [_flat_shape(shape, layout) for shape in shapes]
    expected = (*flats[0][:-1], sum(f[-1] for f in flats))
    expected = expected[::-1] if layout.transpose else expected
    if tuple(array.shape) != expected:
        raise ExportError(
            f"parameter {name}: shape {tuple(array.shape)} in the file, but the model its "
            f"config.json describes needs {expected}; the weights and config.json disagree"
        )
    flat = array.T if layout.transpose else array
    pieces = np.split(flat, np.cumsum([f[-1] for f in flats])[:-1], axis=-1)
    return [piece.reshape(shape) for piece, shape in zip(pieces, shapes)]


def _layer_names(rule: Rule, num_layers: int) -> list[tuple[int | None, str]]:
    if "{i}" in rule.hf:
        return [(i, rule.hf.format(i=i)) for i in range(num_layers)]
    return [(None, rule.hf)]


def params_to_hf(family: str, params: dict, num_layers: int) -> dict[str, np.ndarray]:
    """Our (float32) parameter tree as a flat dict of HF names to arrays."""
    tensors = {}
    for rule in rules_for(family, params):
        stacked = [np.asarray(_get(params, path)) for path in rule.ours]
        for i, name in _layer_names(rule, num_layers):
            tensors[name] = _to_hf([a if i is None else a[i] for a in stacked], rule.layout)
    return tensors


def params_from_hf(
    family: str, tensors: dict[str, np.ndarray], shapes: dict, num_layers: int, fresh: Callable[[], dict]
) -> tuple[dict, list[str]]:
    """Our parameter tree from HF tensors; `shapes` is a tree like ours of arrays or shape structs.

    Names may come with or without the family's base prefix (BertModel's "embeddings..."). A head a
    bare encoder lacks (OPTIONAL) is taken from `fresh()`, newly initialised parameters; returns the
    tree and the HF names taken fresh. Any other missing or unknown name is an error.
    """
    base = BASE_PREFIX[family]
    tensors, params, taken_fresh, fresh_params = dict(tensors), {}, [], None
    for rule in rules_for(family, shapes):
        full_shapes = [tuple(_get(shapes, path).shape) for path in rule.ours]
        per_layer = [[] for _ in rule.ours]
        for i, name in _layer_names(rule, num_layers):
            found = next((c for c in (name, name.removeprefix(base)) if c in tensors), None)
            if found is not None:
                layer_shapes = full_shapes if i is None else [s[1:] for s in full_shapes]
                pieces = _from_hf(name, tensors.pop(found), layer_shapes, rule.layout)
            elif rule.ours[0].startswith(OPTIONAL.get(family, "-")):
                fresh_params = fresh_params or fresh()
                taken_fresh.append(name)
                pieces = [np.asarray(_get(fresh_params, path)) for path in rule.ours]
                pieces = pieces if i is None else [p[i] for p in pieces]
            else:
                raise ExportError(
                    f"parameter {name} is missing from the checkpoint; it is not a {family} model jaxlm can import"
                )
            for stack, piece in zip(per_layer, pieces):
                stack.append(piece)
        for path, stack in zip(rule.ours, per_layer):
            _set(params, path, np.stack(stack) if "{i}" in rule.hf else stack[0])
    # A BertForMaskedLM file may carry the next-sentence head (Google's BERT checkpoints do); like
    # transformers' BertForMaskedLM, a model without that head leaves it behind.
    unknown = [
        name
        for name in tensors
        if not name.endswith(IGNORED_SUFFIXES[family])
        and not name.removeprefix(base).startswith(("pooler.", "cls.seq_relationship."))
    ]
    if unknown:
        raise ExportError(
            f"parameter {unknown[0]} (and {len(unknown) - 1} more) has no place in jaxlm's "
            f"{family} model; the checkpoint has parts jaxlm cannot represent"
        )
    return params, taken_fresh


def resolve_tied_output(family: str, tensors: dict[str, np.ndarray], tied: bool) -> None:
    """Checks a stored tied copy equals the embedding; gives a tied LLaMA its own output matrix."""
    name = next(rule.hf for rule in RULES[family] if rule.ours == ("token_embed/embedding",))
    embedding = tensors.get(name, tensors.get(name.removeprefix(BASE_PREFIX[family])))
    output = tensors.get(OUTPUT[family])
    if embedding is None:
        return  # params_from_hf names the missing embedding
    if family == "llama":
        if tied and output is None:
            tensors[OUTPUT[family]] = embedding  # ours is untied: it starts as the embedding
    elif output is not None and not np.array_equal(output, embedding):
        raise ExportError(
            f"parameter {OUTPUT[family]} differs from the token embedding, but jaxlm's {family} "
            "ties them; this checkpoint cannot be imported"
        )
