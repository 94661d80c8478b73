"""Classification heads: shapes per family, which position each head reads, parameters from a pretrained LM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlm.model.classifier import classifier_config, classifier_params
from jaxlm.model.config import ModelConfig
from jaxlm.model.flops import head_matmul_params
from jaxlm.model.transformer import Transformer
from jaxlm.parallel.rules import DEFAULT_RULES

FAMILIES = ("gpt2", "llama", "bert")
V, L, C = 37, 10, 3
# Row 0 is all real; row 1 has 6 real tokens and 4 of padding (segment 0).
SEGMENTS_BxL = jnp.asarray([[1] * L, [1] * 6 + [0] * 4], jnp.int32)
POSITIONS_BxL = jnp.broadcast_to(jnp.arange(L), (2, L))
IDS_BxL = jnp.asarray(np.random.default_rng(0).integers(5, V, (2, L)), jnp.int32)


def _lm_config(family: str, **overrides) -> ModelConfig:
    sizes = dict(
        vocab_size=V,
        width=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2 if family == "llama" else 4,
        mlp_dim=48,
        max_len=L,
        init_std=0.2,
    )
    return ModelConfig.for_family(family, **{**sizes, **overrides})


def _classifier(family: str, labels_per: str = "sequence", num_labels: int = C, **overrides) -> Transformer:
    cfg = classifier_config(_lm_config(family, **overrides), num_labels, labels_per)
    return Transformer(cfg, rngs=nnx.Rngs(0))


def _changed(ids_BxL: jax.Array, row: int, column: int) -> jax.Array:
    """The ids with one token replaced by another real token (ids 5..V-1)."""
    return ids_BxL.at[row, column].set((ids_BxL[row, column] - 5 + 1) % (V - 5) + 5)


def _logits(model: Transformer, ids_BxL=IDS_BxL, dropout_key=None) -> np.ndarray:
    return np.asarray(model(ids_BxL, POSITIONS_BxL, SEGMENTS_BxL, dropout_key=dropout_key))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("labels_per,num_labels", [("sequence", C), ("sequence", 1), ("token", C)])
def test_label_logits_shapes_and_parameters(family, labels_per, num_labels):
    model = _classifier(family, labels_per, num_labels)
    logits = _logits(model)
    assert logits.shape == ((2, num_labels) if labels_per == "sequence" else (2, L, num_labels))
    assert np.isfinite(logits).all()
    params = nnx.state(model, nnx.Param)
    names = {jax.tree_util.keystr(path, simple=True, separator="/") for path, _ in nnx.to_flat_state(params)}
    head = f"{labels_per}_head"
    assert not names & {"lm_head/kernel", "mlm_head/decoder_bias"}  # no LM head beside the classifier
    assert f"{head}/classifier/kernel" in names
    # HF's causal sequence classifiers' `score` has no bias; every other classifier has one.
    assert (f"{head}/classifier/bias" in names) == (family == "bert" or labels_per == "token")
    assert (f"{head}/pooler/kernel" in names) == (family == "bert" and labels_per == "sequence")
    kernel = params[head]["classifier"]["kernel"]
    assert kernel.shape == (32, num_labels) and kernel.axes == ("embed", "labels")
    axes = {axis for _, variable in nnx.to_flat_state(params) for axis in variable.axes}
    assert axes <= set(DEFAULT_RULES), axes - set(DEFAULT_RULES)  # every axis has a sharding rule


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_causal_sequence_head_reads_the_last_real_token(family):
    model = _classifier(family)
    before = _logits(model)
    padded = _changed(IDS_BxL, 1, 8)
    np.testing.assert_array_equal(_logits(model, padded), before)
    last = _changed(IDS_BxL, 1, 5)
    after = _logits(model, last)
    np.testing.assert_array_equal(after[0], before[0])
    assert np.abs(after[1] - before[1]).max() > 1e-3
    # It is the score of that position's hidden state.
    x_BxLxD = model.encode(IDS_BxL, POSITIONS_BxL, SEGMENTS_BxL)
    kernel = model.sequence_head.classifier.kernel[...]
    np.testing.assert_allclose(before, np.stack([x_BxLxD[0, L - 1], x_BxLxD[1, 5]]) @ kernel, rtol=1e-5, atol=1e-5)


def test_bert_sequence_head_pools_the_first_token():
    model = _classifier("bert")
    before = _logits(model)
    padded = _changed(IDS_BxL, 1, 8)
    np.testing.assert_array_equal(_logits(model, padded), before)
    head = model.sequence_head
    x_BxLxD = model.encode(IDS_BxL, POSITIONS_BxL, SEGMENTS_BxL)
    pooled_BxD = np.tanh(x_BxLxD[:, 0] @ head.pooler.kernel[...] + head.pooler.bias[...])
    expected = pooled_BxD @ head.classifier.kernel[...] + head.classifier.bias[...]
    np.testing.assert_allclose(before, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_token_head_labels_every_position(family):
    model = _classifier(family, "token")
    x_BxLxD = model.encode(IDS_BxL, POSITIONS_BxL, SEGMENTS_BxL)
    head = model.token_head.classifier
    np.testing.assert_allclose(_logits(model), x_BxLxD @ head.kernel[...] + head.bias[...], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("labels_per", ["sequence", "token"])
def test_head_dropout_applies_with_a_key_only(labels_per):
    model = _classifier("bert", labels_per, dropout=0.0, classifier_dropout=0.5)
    evaluated = _logits(model)
    np.testing.assert_array_equal(_logits(model), evaluated)
    trained = _logits(model, dropout_key=jax.random.key(1))
    assert not np.allclose(trained, evaluated)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("labels_per", ["sequence", "token"])
def test_classifier_params_keep_the_encoder_and_drop_the_lm_heads(family, labels_per):
    lm_cfg = _lm_config(family, next_sentence_head=family == "bert", type_vocab_size=2 if family == "bert" else 0)
    lm_params = nnx.to_pure_dict(nnx.state(Transformer(lm_cfg, rngs=nnx.Rngs(1))))
    cfg, params = classifier_params(lm_cfg, lm_params, C, labels_per, seed=2)
    assert (cfg.num_labels, cfg.labels_per, cfg.next_sentence_head) == (C, labels_per, False)
    built = nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(0))))
    assert jax.tree.structure(params) == jax.tree.structure(built)
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, built)
    for name in set(lm_params) - {"lm_head", "mlm_head", "next_sentence_head"}:
        jax.tree.map(_same_array, params[name], lm_params[name])
    head = params[f"{labels_per}_head"]
    assert ("pooler" in head) == (family == "bert" and labels_per == "sequence")
    if "pooler" in head:  # BERT's pooler starts as the next-sentence head's
        jax.tree.map(_same_array, head["pooler"], lm_params["next_sentence_head"]["pooler"])
    # The classifier computes on the pretrained encoder's hidden states, bitwise.
    graphdef = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))[0]
    lm_graphdef = nnx.split(nnx.eval_shape(lambda: Transformer(lm_cfg, rngs=nnx.Rngs(0))))[0]
    ours = nnx.merge(graphdef, params).encode(IDS_BxL, POSITIONS_BxL, SEGMENTS_BxL)
    theirs = nnx.merge(lm_graphdef, lm_params).encode(IDS_BxL, POSITIONS_BxL, SEGMENTS_BxL)
    np.testing.assert_array_equal(ours, theirs)


def _same_array(ours, pretrained):
    assert ours is pretrained  # the pretrained array itself, not a copy


def test_a_classifier_is_refused_where_only_a_language_model_makes_sense():
    with pytest.raises(AssertionError, match="no next-sentence head"):
        Transformer(_lm_config("bert", num_labels=C, next_sentence_head=True), rngs=nnx.Rngs(0))
    model = _classifier("gpt2")
    with pytest.raises(AssertionError, match="language-model head"):
        model.decode(IDS_BxL[:, :1], POSITIONS_BxL[:, :1], SEGMENTS_BxL[:, :1], model.init_cache(2, L), 0)


def test_head_flops_count_the_classifier_not_the_vocabulary():
    lm_cfg = _lm_config("gpt2")
    assert head_matmul_params(lm_cfg) == 32 * V
    assert head_matmul_params(classifier_config(lm_cfg, C, "token")) == 32 * C
    assert head_matmul_params(classifier_config(lm_cfg, C, "sequence")) == 0  # one position a row
